/**
 * Pulumi.yaml's `main`: the stack program as the module's export. Pulumi's Node.js runtime
 * calls an exported function and makes its result the stack outputs (see program.ts).
 */
import { program } from './program';

export = program;
