/**
 * The composition root lives in src/service (it builds the engine, the store and the API); this
 * re-export keeps `src/api/service.js` importable for callers that predate the move.
 */
export { startService, type Service } from '../service/service.js';
