/**
 * Route plugins of the API, registered by src/api/server.ts. Each feature exports a
 * fastify plugin from its own file in this folder and adds it here.
 */
import { engineRoutes } from './engine.js';
import { profileRoutes } from './profiles.js';

export const routePlugins: Array<{ name: string; plugin: unknown }> = [
  { name: 'profiles', plugin: profileRoutes },
  { name: 'engine', plugin: engineRoutes },
];
