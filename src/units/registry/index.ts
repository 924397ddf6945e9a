/**
 * The registry (docs/registry.md): `import ... from './registry'` / `'../units/registry'`
 * resolves here. See ./registry.ts for the class and the file map in docs/registry.md.
 */
export { Registry } from './registry';
export { registryPrefix } from '../../config/key-layout';
export * from './model';
export type { AgentStore, EngineStore, RolloutStore } from './stores';
