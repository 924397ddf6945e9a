/**
 * Transaction building blocks: raw etcd requests (so that range compares and nested
 * transactions are available), and the small helpers every registry module shares.
 */
import { CompareResult, CompareTarget, type ICompare, type IKeyValue, type IRequestOp, type ITxnRequest, type ITxnResponse } from 'etcd3';

export const buf = (s: string): Buffer => Buffer.from(s, 'utf8');
export const text = (kv: IKeyValue): string => kv.value.toString('utf8');
export const keyOf = (kv: IKeyValue): string => kv.key.toString('utf8');

/** The exclusive end of the key range sharing `prefix`. */
export function prefixEnd(prefix: string): Buffer {
  const b = Buffer.from(prefix, 'utf8');
  for (let i = b.length - 1; i >= 0; i--) {
    if (b[i]! < 0xff) return Buffer.concat([b.subarray(0, i), Buffer.from([b[i]! + 1])]);
  }
  return Buffer.from([0]);
}

export const op = {
  put: (key: string, value: string, lease?: string): IRequestOp => ({ request_put: { key: buf(key), value: buf(value), ...(lease ? { lease } : {}) } }),
  del: (key: string): IRequestOp => ({ request_delete_range: { key: buf(key) } }),
  get: (key: string): IRequestOp => ({ request_range: { key: buf(key) } }),
  txn: (req: ITxnRequest): IRequestOp => ({ request_txn: req }),
};

type Cmp = 'Equal' | 'Greater' | 'Less' | 'NotEqual';
export const cmp = {
  /** create_revision; 0 means "absent", > 0 "present". */
  created: (key: string, c: Cmp, rev: string | number): ICompare => ({ key: buf(key), target: CompareTarget.Create, result: CompareResult[c], create_revision: rev }),
  /** Holds for every key under the prefix, hence `noneUnder` with Equal 0. */
  noneUnder: (prefix: string): ICompare => ({ key: buf(prefix), range_end: prefixEnd(prefix), target: CompareTarget.Create, result: CompareResult.Equal, create_revision: 0 }),
  modified: (key: string, rev: string): ICompare => ({ key: buf(key), target: CompareTarget.Mod, result: CompareResult.Equal, mod_revision: rev }),
  lease: (key: string, lease: string): ICompare => ({ key: buf(key), target: CompareTarget.Lease, result: CompareResult.Equal, lease }),
};

export function rangeKvs(res: ITxnResponse, i: number): IKeyValue[] {
  return res.responses[i]?.response_range?.kvs ?? [];
}

export const now = (): string => new Date().toISOString();

export function warn(err: Error): void {
  process.emitWarning(err.message, { code: 'FLOTILLA_REGISTRY' });
}
