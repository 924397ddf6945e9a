import type { CommandSpec } from './command';
import { renderCommand } from './commands/render';
import { validateCommand } from './commands/validate';
import { convertCommand } from './commands/convert';
import { fleetdCommand } from './commands/fleetd';
import { unitsCommands } from './commands/units';

/** Every CLI command; `flotilla --help` lists them in this order. */
export const commands: CommandSpec[] = [renderCommand, validateCommand, convertCommand, fleetdCommand, ...unitsCommands];
