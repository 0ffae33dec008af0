/** Tiered guest profiles: load, validate, resolve and render for QEMU and libvirt. */
export * from './schema.js';
export * from './size.js';
export * from './profile.js';
export * from './load.js';
export * from './render-qemu.js';
export * from './lab.js';
export * from './render-libvirt.js';
export * from './host-check.js';
export * from './render.js';
