import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';
import { ChatClient, type ChatClientOptions } from '../../src/client/index.js';
import styles from './styles.css?inline';
import { LiveChat } from './widget/LiveChat.js';

export interface MountOptions {
  /** Where draw-chat runs, e.g. `https://chat.example.com`. Default: this page's origin. */
  baseUrl?: string;
  /**
   * Returns the viewer's JWT (e.g. the Descope session token). Called again when it is about to expire, and
   * after the server refused one (`refused` is that token: return another).
   */
  getToken: ChatClientOptions['getToken'];
  /** Join this session instead of the active one. */
  sessionId?: number;
  /** Heading of the widget. Default "Live chat". */
  title?: string;
  /** More client options (backoff, …). */
  client?: Partial<Omit<ChatClientOptions, 'baseUrl' | 'getToken' | 'sessionId'>>;
}

export interface MountedChat {
  readonly client: ChatClient;
  unmount(): void;
}

const styled = new WeakSet<Node>();

/** Puts the widget's CSS once into the document (or the shadow root) that holds `element`. */
function injectStyles(element: Element): void {
  const root = element.getRootNode();
  if (styled.has(root)) return;
  styled.add(root);
  const style = document.createElement('style');
  style.dataset.drawChat = '';
  style.textContent = styles;
  if (root instanceof ShadowRoot) root.prepend(style);
  else document.head.append(style);
}

/**
 * Renders the live chat into `element` and connects it. The element decides the size: give it a height
 * (the chat fills it and scrolls inside).
 */
export function mountLiveChat(element: HTMLElement, options: MountOptions): MountedChat {
  injectStyles(element);
  const client = new ChatClient({
    ...options.client,
    baseUrl: options.baseUrl ?? window.location.origin,
    getToken: options.getToken,
    ...(options.sessionId !== undefined ? { sessionId: options.sessionId } : {}),
  });
  const root = createRoot(element);
  root.render(
    <StrictMode>
      <LiveChat client={client} title={options.title} />
    </StrictMode>,
  );
  return {
    client,
    unmount() {
      root.unmount();
      client.stop();
    },
  };
}

/**
 * `<draw-chat base-url="https://chat.example.com" token="…">`, or set the `getToken` property to a function
 * (preferred: it is asked again before the token expires). Renders in a shadow root, so the host page's CSS
 * does not reach in; the `--dc-*` CSS variables do.
 */
export class DrawChatElement extends HTMLElement {
  static observedAttributes = ['base-url', 'session-id', 'heading'];
  /**
   * Returns the viewer's JWT; takes precedence over the `token` attribute. `refused` is the token the server
   * refused last (or null), as for `mountLiveChat`'s `getToken`: hand out a fresh one, not that one again.
   */
  getToken: ChatClientOptions['getToken'] | undefined;
  #mounted: MountedChat | undefined;
  #scheduled = false;

  connectedCallback(): void {
    this.#schedule();
  }

  disconnectedCallback(): void {
    this.#mounted?.unmount();
    this.#mounted = undefined;
  }

  attributeChangedCallback(): void {
    if (!this.#mounted) return;
    this.#mounted.unmount();
    this.#mounted = undefined;
    this.#schedule();
  }

  // Properties such as getToken are often set right after the element is created: mount a tick later.
  #schedule(): void {
    if (this.#scheduled) return;
    this.#scheduled = true;
    queueMicrotask(() => {
      this.#scheduled = false;
      if (this.isConnected && !this.#mounted) this.#mount();
    });
  }

  #mount(): void {
    const shadow = this.shadowRoot ?? this.attachShadow({ mode: 'open' });
    shadow.replaceChildren();
    const container = document.createElement('div');
    container.className = 'dc-host';
    shadow.append(container);
    const sessionId = Number(this.getAttribute('session-id'));
    this.#mounted = mountLiveChat(container, {
      baseUrl: this.getAttribute('base-url') ?? undefined,
      getToken: (context) => {
        if (this.getToken) return this.getToken(context);
        const token = this.getAttribute('token');
        if (!token) throw new Error('<draw-chat> needs a getToken property or a token attribute');
        return token;
      },
      ...(Number.isInteger(sessionId) && sessionId > 0 ? { sessionId } : {}),
      title: this.getAttribute('heading') ?? undefined,
    });
  }
}

/** Defines `<draw-chat>` (once). */
export function defineDrawChatElement(name = 'draw-chat'): void {
  if (!customElements.get(name)) customElements.define(name, DrawChatElement);
}
