import { useId, useState } from 'react';
import { type DevIdentity, devJoin } from './auth.js';

/** Dev auth mode: who are you? A display name, optionally a HOST, and a dev token from the server. */
export function JoinCard({ onJoined }: { onJoined: (identity: DevIdentity) => void }) {
  const [name, setName] = useState('');
  const [host, setHost] = useState(false);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const nameId = useId();
  const hostId = useId();
  const errorId = useId();

  const join = async () => {
    const username = name.trim();
    if (!username) {
      setError('Pick a display name first.');
      return;
    }
    setBusy(true);
    setError(null);
    try {
      onJoined(await devJoin(username, host));
    } catch (err) {
      setError(err instanceof Error ? err.message : String(err));
      setBusy(false);
    }
  };

  return (
    <main className="dc-join">
      <form
        className="dc-join__card"
        onSubmit={(e) => {
          e.preventDefault();
          void join();
        }}
      >
        <div className="dc-join__logo" aria-hidden="true">
          <img src="/favicon.svg" alt="" width="44" height="44" />
        </div>
        <h1>Join the draw</h1>
        <p className="dc-join__lead">
          Pick a display name to watch the draw and chat with everyone else. This is a local demo: no
          password, the server signs a development token for you.
        </p>
        <label className="dc-field" htmlFor={nameId}>
          <span>Display name</span>
          <input
            id={nameId}
            type="text"
            value={name}
            maxLength={100}
            autoComplete="nickname"
            // biome-ignore lint/a11y/noAutofocus: the name is the only thing this page asks for
            autoFocus
            aria-invalid={error !== null || undefined}
            aria-describedby={error ? errorId : undefined}
            onChange={(e) => setName(e.target.value)}
          />
        </label>
        <label className="dc-check" htmlFor={hostId}>
          <input id={hostId} type="checkbox" checked={host} onChange={(e) => setHost(e.target.checked)} />
          <span>Join as host</span>
        </label>
        {error && (
          <p id={errorId} className="dc-notice dc-notice--error" role="alert">
            {error}
          </p>
        )}
        <button type="submit" className="dc-primary" disabled={busy}>
          {busy ? 'Joining…' : 'Join'}
        </button>
      </form>
    </main>
  );
}
