import { StrictMode, useMemo, useState } from 'react';
import { createRoot } from 'react-dom/client';
import { ChatClient, type ChatClientOptions } from '../../src/client/index.js';
import {
  authMode,
  type DevIdentity,
  devTokenSource,
  forgetIdentity,
  storedIdentity,
  tokenFromFragment,
} from './demo/auth.js';
import { DrawPanel } from './demo/DrawPanel.js';
import { JoinCard } from './demo/JoinCard.js';
import './styles.css';
import { LiveChat } from './widget/LiveChat.js';

/** The demo draw page: what a draw platform's page with the chat looks like. */
function App() {
  const mode = authMode();
  const [identity, setIdentity] = useState<DevIdentity | null>(() =>
    mode === 'dev' ? storedIdentity() : null,
  );
  const [prodToken] = useState(() => (mode === 'production' ? tokenFromFragment() : null));

  if (mode === 'dev' && !identity) return <JoinCard onJoined={setIdentity} />;
  if (mode === 'production' && !prodToken) return <SignIn />;

  const getToken = identity ? devTokenSource(identity) : () => prodToken!;
  return (
    <DrawPage
      key={identity?.token ?? prodToken}
      getToken={getToken}
      // The name alone: the words of the badges (WINNER, HOST) appear on the page only as badges, so that a viewer,
      // or a browser test, finding them as text finds a badge.
      who={identity ? identity.username : null}
      onSwitch={
        identity
          ? () => {
              forgetIdentity();
              setIdentity(null);
            }
          : undefined
      }
    />
  );
}

function DrawPage({
  getToken,
  who,
  onSwitch,
}: {
  getToken: ChatClientOptions['getToken'];
  who: string | null;
  onSwitch?: () => void;
}) {
  // One client for the page: the draw panel reads the schedule from it, the widget chats through it.
  const client = useMemo(() => new ChatClient({ baseUrl: window.location.origin, getToken }), [getToken]);
  return (
    <div className="dc-page">
      <header className="dc-topbar">
        <a className="dc-brand" href="/">
          <img src="/favicon.svg" alt="" width="28" height="28" />
          <span>
            draw<span className="dc-brand__accent">chat</span>
          </span>
        </a>
        <span className="dc-topbar__tag">Demo draw page</span>
        <nav className="dc-topbar__nav" aria-label="Account">
          {who && (
            <span className="dc-topbar__who">
              Signed in as <strong>{who}</strong>
            </span>
          )}
          {onSwitch && (
            <button type="button" className="dc-ghost" onClick={onSwitch}>
              Switch user
            </button>
          )}
          <a className="dc-ghost" href="/docs">
            API docs
          </a>
        </nav>
      </header>
      <main className="dc-layout">
        <DrawPanel client={client} />
        <aside className="dc-layout__chat" aria-label="Chat">
          <LiveChat client={client} />
        </aside>
      </main>
    </div>
  );
}

function SignIn() {
  return (
    <main className="dc-join">
      <div className="dc-join__card">
        <h1>Sign in to chat</h1>
        <p className="dc-join__lead">
          Sign in through your draw platform: it opens this page with your session token, and the chat takes
          it from there.
        </p>
      </div>
    </main>
  );
}

createRoot(document.getElementById('root')!).render(
  <StrictMode>
    <App />
  </StrictMode>,
);
