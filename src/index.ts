/** Flotilla's library API: everything the CLI does is reachable from here. */
export * from './errors';
export * from './config/spec';
