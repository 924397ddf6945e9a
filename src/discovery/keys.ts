/**
 * Service discovery's key layout in etcd, as discovery and its callers name it:
 *
 *   <services prefix><service>/<instance>   e.g. /flotilla/demo/services/web/3f9c…  (value: endpoint.ts)
 *
 * The services prefix of a cluster is `<registry prefix>services/`, i.e.
 * `/flotilla/<cluster>/services/`; the fleet registry (src/units/registry/) never uses it.
 * The keys are built and parsed in the one key-layout module, src/config/key-layout.ts;
 * this module only gives them discovery's names.
 */
export {
  SERVICE_NAME_PATTERN as NAME_PATTERN,
  checkServiceName as checkName,
  instanceKey,
  parseInstanceKey,
  serviceKeyPrefix,
  serviceNameProblem as nameProblem,
  servicesPrefix,
} from '../config/key-layout';
