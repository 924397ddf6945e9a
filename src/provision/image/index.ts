/** The node image builder and its cache: what platforms and the CLI use of `src/provision/image/`. */
export { buildImage, debianMirrors, ensureImage } from './image';
export { getImage, listImages, pruneCache, removeImage, type BaseInfo, type BuildOptions, type BuildProgress, type ImageInfo, type ProgressFn, type PruneResult, type StepTiming } from './cache';
export { moduleClosure } from './modules';
