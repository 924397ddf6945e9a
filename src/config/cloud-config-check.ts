/**
 * Flotilla's own cloud-config checks. `cloud-init schema` checks types but, being
 * permissive, not unknown keys: a typo such as `packages_update` passes it silently.
 */
import type { Problem } from '../errors';
import { describe, join, nearest } from './validate';

/** Top-level keys of cloud-init 22.4's modules (its schema's cc_* and base definitions) plus merge/system keys. */
export const CLOUD_CONFIG_KEYS: readonly string[] = (
  'allow_public_ssh_keys ansible apk_repos apt apt_pipelining apt_reboot_if_required apt_update apt_upgrade authkey_hash ' +
  'autoinstall bootcmd byobu_by_default ca-certs ca_certs chef chpasswd cloud_config_modules cloud_final_modules ' +
  'cloud_init_modules device_aliases disable_ec2_metadata disable_root disable_root_opts disk_setup drivers fan ' +
  'final_message fqdn fs_setup groups growpart grub-dpkg grub_dpkg hostname keyboard landscape locale locale_configfile ' +
  'lxd manage_etc_hosts manage_resolv_conf mcollective migrate mount_default_fields mounts no_ssh_fingerprints ntp ' +
  'package_reboot_if_required package_update package_upgrade packages password phone_home power_state ' +
  'prefer_fqdn_over_hostname preserve_hostname puppet random_seed reporting resize_rootfs resolv_conf rh_subscription ' +
  'rsyslog runcmd salt_minion snap spacewalk ssh ssh_authorized_keys ssh_deletekeys ssh_fp_console_blacklist ' +
  'ssh_genkeytypes ssh_import_id ssh_key_console_blacklist ssh_keys ssh_publish_hostkeys ssh_pwauth ssh_quiet_keygen ' +
  'swap timezone ubuntu_advantage updates user users vendor_data wireguard write_files yum_repo_dir yum_repos zypper ' +
  'merge_how merge_type system_info datasource datasource_list network output log_cfg'
).split(' ');

/** Problems with a parsed cloud-config document (unknown keys, write_files shape); [] when fine. */
export function checkCloudConfig(doc: unknown, basePath = ''): Problem[] {
  const problems: Problem[] = [];
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) {
    return [{ path: basePath, message: `a cloud-config must be a mapping, got ${describe(doc)}` }];
  }
  const obj = doc as Record<string, unknown>;
  for (const k of Object.keys(obj)) {
    if (!CLOUD_CONFIG_KEYS.includes(k)) {
      const near = nearest(k, CLOUD_CONFIG_KEYS);
      problems.push({ path: join(basePath, k), message: `unknown cloud-config key${near ? ` (did you mean "${near}"?)` : ''}; cloud-init would ignore it`, atKey: true });
    }
  }
  const wf = obj.write_files;
  if (wf !== undefined) {
    if (!Array.isArray(wf)) problems.push({ path: join(basePath, 'write_files'), message: `must be a list, got ${describe(wf)}` });
    else {
      const seen = new Map<string, number>();
      wf.forEach((f, i) => {
        const p = `${join(basePath, 'write_files')}[${i}]`;
        if (typeof f !== 'object' || f === null) return problems.push({ path: p, message: `must be a mapping, got ${describe(f)}` }) && undefined;
        const file = f as Record<string, unknown>;
        if (typeof file.path !== 'string' || !file.path.startsWith('/')) problems.push({ path: `${p}.path`, message: 'must be an absolute path' });
        else if (seen.has(file.path) && file.append !== true) problems.push({ path: `${p}.path`, message: `${file.path} is written twice (also write_files[${seen.get(file.path)}])` });
        else seen.set(file.path as string, i);
        if (file.permissions !== undefined && (typeof file.permissions !== 'string' || !/^0?[0-7]{3,4}$/.test(file.permissions))) {
          problems.push({ path: `${p}.permissions`, message: `must be an octal string such as "0644", got ${describe(file.permissions)}` });
        }
        return undefined;
      });
    }
  }
  return problems;
}
