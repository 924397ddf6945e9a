/**
 * A minimal QMP client (QEMU Machine Protocol, JSON lines over a unix socket): greeting,
 * `qmp_capabilities`, then one command. Enough to save and restore a VM (stop, migrate, cont) and to take a NIC's link down and up.
 */
import * as net from 'node:net';
import { FlotillaError } from '../../errors';

/** Runs one QMP command and returns its `return` value; QMP errors become `external`. */
export function qmpCommand(socketPath: string, command: string, args?: Record<string, unknown>, timeoutMs = 10_000): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(socketPath);
    let buf = '';
    let step: 'greeting' | 'capabilities' | 'command' = 'greeting';
    const finish = (err: Error | undefined, value?: unknown) => {
      clearTimeout(timer);
      sock.destroy();
      if (err) reject(err);
      else resolve(value);
    };
    const timer = setTimeout(() => finish(new FlotillaError('timeout', `QMP ${socketPath}: ${command}: no answer within ${timeoutMs} ms`)), timeoutMs);
    sock.on('error', (err) => finish(new FlotillaError('external', `QMP ${socketPath}: ${err.message}`)));
    sock.on('close', () => finish(new FlotillaError('external', `QMP ${socketPath}: closed before ${command} was answered`)));
    sock.on('data', (d: Buffer) => {
      buf += d.toString('utf8');
      for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
        const line = buf.slice(0, nl).trim();
        buf = buf.slice(nl + 1);
        if (!line) continue;
        let msg: { QMP?: unknown; return?: unknown; error?: { class?: string; desc?: string }; event?: string };
        try {
          msg = JSON.parse(line) as typeof msg;
        } catch {
          finish(new FlotillaError('external', `QMP ${socketPath}: not JSON: ${line.slice(0, 200)}`));
          return;
        }
        if (msg.event !== undefined) continue; // asynchronous events are not answers
        if (msg.error) {
          finish(new FlotillaError('external', `QMP ${socketPath}: ${step === 'command' ? command : 'qmp_capabilities'}: ${msg.error.class ?? 'error'}: ${msg.error.desc ?? ''}`));
          return;
        }
        if (step === 'greeting' && msg.QMP !== undefined) {
          step = 'capabilities';
          sock.write(`${JSON.stringify({ execute: 'qmp_capabilities' })}\n`);
        } else if (step === 'capabilities' && 'return' in msg) {
          step = 'command';
          sock.write(`${JSON.stringify({ execute: command, ...(args ? { arguments: args } : {}) })}\n`);
        } else if (step === 'command' && 'return' in msg) {
          finish(undefined, msg.return);
          return;
        }
      }
    });
  });
}
