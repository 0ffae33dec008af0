/**
 * Route plugins of the API, registered by src/api/server.ts. Each feature exports a
 * fastify plugin from its own file in this folder and adds it here.
 */
import { engineRoutes } from './engine.js';
import { heatRoutes } from './heat.js';
import { profileRoutes } from './profiles.js';
import { uiRoutes } from './ui.js';

export const routePlugins: Array<{ name: string; plugin: unknown }> = [
  { name: 'profiles', plugin: profileRoutes },
  { name: 'engine', plugin: engineRoutes },
  { name: 'heat', plugin: heatRoutes },
  { name: 'ui', plugin: uiRoutes },
];
