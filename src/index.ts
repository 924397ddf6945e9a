/**
 * Flotilla's library API: what the CLI does, as typed functions. The CLI (src/cli/) parses
 * arguments, calls these and prints; every failure is a FlotillaError whose `code` the CLI maps
 * to its exit status (src/cli/exit-codes.ts).
 */
export * from './errors';
export * from './config/spec';

// Config: spec -> per-node cloud-config / Ignition, checked by the real validators.
export { loadSpecFile, loadSpecText, loadSpecObject } from './config/load';
export { renderCluster, renderNode, type RenderedNode, type RenderOptions } from './config/render';
export { validateRendered } from './config/output';
export { ensureSecrets, readSecrets, writeSecrets } from './config/secrets';
export { validateFile, type FileValidation } from './config/validate-file';
export { convertLegacy, isLegacyCoreosConfig, type ConvertResult } from './config/legacy';
export { groupWarnings, summarizeWarnings } from './config/legacy/warnings';

// Units: fleet-style scheduling through etcd.
export { UnitsClient, checkUnitFile, checkUnitText, readUnitArgs, type CheckedUnit, type UnitRow } from './units/client';
export { Registry } from './units/registry';
export { startFleetd, type FleetdConfig } from './units/fleetd';

// Clusters: local QEMU and libvirt.
export { upCluster, type UpOptions, type UpResult, type PhaseEvent, type Launcher } from './provision/up';
export { upLocal, downLocal, localLauncher } from './provision/local/up';
export { listClusters, readRecord, readSavedSpec, type ClusterRecord, type NodeRecord } from './cluster/store';
export { upLibvirt, downLibvirt, libvirtLauncher } from './provision/libvirt/up';
export { replaceNodes, type ReplaceOptions } from './provision/replace';
export { localMachinery } from './provision/local/replace-node';
export { libvirtMachinery } from './provision/libvirt/replace-node';
export { inventoryFromRecord } from './provision/local/inventory';
export { loadInventoryFile, loadInventoryText, type Inventory } from './cluster/inventory';

// Verification and faults.
export { runVerify, verifyReplaced, type VerifyOptions, type VerifyRun } from './verify/verify';
export { runSmoke, type SmokeOptions, type SmokeResult } from './verify/smoke';
export { formatReport, FORMATS as REPORT_FORMATS, type ReportFormat } from './verify/report';
export { runChaos, type ChaosReport, type ChaosRunOptions } from './chaos/runner';
