/**
 * Shared by Flotilla's dynamic providers. A dynamic provider is serialised as a closure into the
 * resource's `__provider` input and later run by Pulumi's dynamic-provider host: a plain `node`
 * process without this project's tsx loader, in whatever directory the engine chooses. So the
 * provider methods capture nothing but strings and this one function, and load Flotilla's
 * TypeScript sources themselves, by absolute path, through tsx's CommonJS hook.
 */
import * as path from 'node:path';

/** The repository root, captured by value into serialised providers. */
export const PROJECT_ROOT = path.resolve(__dirname, '..', '..', '..');

/**
 * Requires a Flotilla source file (path relative to the repository root), registering tsx's
 * CommonJS hook first if `.ts` files cannot be loaded yet (the dynamic-provider host).
 */
export function loadSource<T>(root: string, rel: string): T {
  // require.extensions is deprecated but is the one synchronous way to ask whether .ts loads here.
  if (!require.extensions['.ts']) {
    (require(require.resolve('tsx/cjs/api', { paths: [root] })) as { register: () => unknown }).register();
  }
  return require(`${root}/${rel}`) as T;
}
