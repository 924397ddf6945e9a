/**
 * The real-world corpus (test/fixtures/real-world/): where it is, and the files in it that are
 * correctly refused, each with the reason the product must give.
 */
import * as path from 'node:path';

export const REAL_WORLD = path.join(__dirname, '..', 'fixtures', 'real-world');

/** Files CoreOS would not have accepted either (or that are unrendered templates), with the reason the converter must give. */
export const REFUSED_CLOUD_CONFIGS: Readonly<Record<string, RegExp>> = {
  // coreos-cloudinit compared the whole first line with `#cloud-config`.
  'analogj-azure-coreos-deis--cloud-config.yml': /1:1: the first line must be `#cloud-config` .*found `  #cloud-config`/,
  'ntipa-coreos--cloud-config.yaml': /1:1: the first line must be `#cloud-config` .*found `coreos:`/,
  // Terraform/Heat templates never rendered: YAML cannot read them (or a checked value is the placeholder).
  'dxfrance-azurekubernetes--init-static-templates-kubernetes-cluster-etcd-nodes.yml.tpl': /:7:1: YAML syntax error: .*`\$\{Etc_Host\}` looks like an unrendered template placeholder/,
  'joaocc-infrastructure--conf-user-data.tpl': /YAML syntax error: .*`\$\{join\(/,
  'chrigl-heat-examples--coreos-kubernetes-kubernetes-worker-cloudinit.yaml.tpl': /:18:22: coreos\.update\.reboot-strategy: must be .*found "\$reboot_strategy"; `\$reboot_strategy` looks like an unrendered template placeholder/,
  'kraken-lib--terraform-local-templates-etcd.yaml.tpl': /:35:22: coreos\.update\.reboot-strategy: .*`\$\{coreos_reboot_strategy\}` looks like an unrendered template placeholder/,
  'richardknop-coreos-cluster--registry-templates-cloud-config.yml': /:10:14: write_files\[1\]\.content: content is not valid base64 .*`\$\{private_key\}` looks like an unrendered template placeholder/,
  // A drop-in's `content:` indented under its `name:` value: go-yaml refused it too.
  'mrpink-tf-kubernetes--aws-cluster-worker-cloud-config.yml.tpl': /:28:15: YAML syntax error: Nested mappings are not allowed/,
  // A quoted SSH key never closed.
  'stefanwallin-coreos-cloudconfig--cloud-config.yml': /:8:422: YAML syntax error: Missing closing "quote/,
};

/** Unit files fleet took but systemd could not have run as written, or that could never be placed. */
export const REFUSED_UNITS: Readonly<Record<string, RegExp>> = {
  // A continued ExecStart= loses its backslash one line early: systemd ignores the next line and the quote never closes.
  'ft-up-service-files/elasticsearch-sidekick@.service': /:14: .*expected KEY=VALUE or \[Section\], got "sleep 120;/,
  // MachineOf= is an exact unit name: a glob names no unit, so fleet never placed it.
  'andcur-jadgefleet/mongos@.service': /:33: X-Fleet\.MachineOf: invalid unit name "littlehelper@\*\.service".*takes exact unit names, not globs/,
};

