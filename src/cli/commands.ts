import type { CommandSpec } from './command';
import { renderCommand } from './commands/render';
import { validateCommand } from './commands/validate';
import { convertCommand } from './commands/convert';
import { fleetdCommand } from './commands/fleetd';
import { unitsCommands } from './commands/units';
import { verifyCommand } from './commands/verify';
import { unitsRemoteCommands } from './commands/units-remote';
import { clusterCommands } from './commands/cluster';
import { smokeCommand } from './commands/smoke';
import { imageCommands } from './commands/image';
import { chaosCommand } from './commands/chaos';
import { discoveryCommands } from './commands/discovery';
import { replaceCommand } from './commands/replace';

/** Every CLI command; `flotilla --help` lists them in this order. */
export const commands: CommandSpec[] = [...clusterCommands, replaceCommand, ...imageCommands, renderCommand, validateCommand, convertCommand, fleetdCommand, ...unitsCommands, verifyCommand, smokeCommand, chaosCommand, ...unitsRemoteCommands, ...discoveryCommands];
