import { describe, expect, it } from 'vitest';
import { errorLine, isStoreUnavailable, isStoreUnreached } from '../../src/store/errors.js';

const coded = (code: string, message = 'x') => Object.assign(new Error(message), { code });

describe('store failures: away (retryable) and never reached (nothing committed)', () => {
  it('a connection that could not be made is both', () => {
    for (const err of [
      coded('ECONNREFUSED', 'connect ECONNREFUSED 127.0.0.1:5432'),
      coded('ENOTFOUND'),
      coded('57P03', 'the database system is starting up'),
      coded('53300', 'sorry, too many clients already'),
      coded('SQLITE_BUSY', 'database is locked'),
      new Error('timeout exceeded when trying to connect'),
      new Error('Client was closed and is not queryable'),
    ]) {
      expect(isStoreUnavailable(err), err.message).toBe(true);
      expect(isStoreUnreached(err), err.message).toBe(true);
    }
  });

  it('a connection lost or a statement timed out mid-transaction is away but may have committed', () => {
    for (const err of [
      coded('ECONNRESET'),
      coded('EPIPE'),
      coded('57P01', 'terminating connection due to administrator command'),
      coded('57014', 'canceling statement due to statement timeout'),
      coded('08006'),
      coded('SQLITE_IOERR_FSYNC'),
      new Error('Connection terminated unexpectedly'),
      new Error('Query read timeout'),
    ]) {
      expect(isStoreUnavailable(err), err.message).toBe(true);
      expect(isStoreUnreached(err), err.message).toBe(false);
    }
  });

  it('a wrong batch (a constraint, a syntax error) is neither', () => {
    for (const err of [
      coded('23503', 'insert or update violates foreign key constraint'),
      coded('SQLITE_CONSTRAINT_FOREIGNKEY'),
      coded('42601'),
      new TypeError('x is not a function'),
    ]) {
      expect(isStoreUnavailable(err), err.message).toBe(false);
      expect(isStoreUnreached(err), err.message).toBe(false);
    }
    for (const value of [undefined, null, 'ECONNREFUSED', 42]) {
      expect(isStoreUnavailable(value)).toBe(false);
      expect(isStoreUnreached(value)).toBe(false);
    }
  });

  it('looks through `cause` (a few levels) and AggregateError: any address away, every address unreached', () => {
    const wrapped = new Error('write failed', { cause: new Error('pool', { cause: coded('ECONNREFUSED') }) });
    expect(isStoreUnavailable(wrapped)).toBe(true);
    expect(isStoreUnreached(wrapped)).toBe(true);
    let deep: Error = coded('ECONNREFUSED');
    for (let i = 0; i < 6; i++) deep = new Error(`level ${i}`, { cause: deep });
    expect(isStoreUnavailable(deep)).toBe(false);

    const bothRefused = new AggregateError([coded('ECONNREFUSED'), coded('ECONNREFUSED')], 'connect');
    expect(isStoreUnavailable(bothRefused)).toBe(true);
    expect(isStoreUnreached(bothRefused)).toBe(true);
    const oneReset = new AggregateError([coded('ECONNREFUSED'), coded('ECONNRESET')], 'connect');
    expect(isStoreUnavailable(oneReset)).toBe(true);
    expect(isStoreUnreached(oneReset)).toBe(false);
    expect(isStoreUnreached(new AggregateError([], 'empty'))).toBe(false);
  });

  it('errorLine: the message, else the parts of an AggregateError (a refused connect to localhost has no message of its own), else the code', () => {
    expect(errorLine(new Error('boom'))).toBe('boom');
    const refused = new AggregateError(
      [
        coded('ECONNREFUSED', 'connect ECONNREFUSED ::1:5432'),
        coded('ECONNREFUSED', 'connect ECONNREFUSED 127.0.0.1:5432'),
      ],
      '',
    );
    expect(errorLine(refused)).toBe('connect ECONNREFUSED ::1:5432; connect ECONNREFUSED 127.0.0.1:5432');
    expect(errorLine(coded('ECONNRESET', ''))).toBe('ECONNRESET');
    expect(errorLine('plain')).toBe('plain');
  });
});
