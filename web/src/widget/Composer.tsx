import { useId, useRef, useState } from 'react';
import { Hearts, type HeartsHandle } from './Hearts.js';
import { HeartIcon, SendIcon } from './icons.js';

interface Props {
  /** Typing and sending are possible (sending while reconnecting queues the message). */
  canSend: boolean;
  /** Hearts need a live connection. */
  canLike: boolean;
  maxLength: number;
  onSend: (text: string) => void;
  onLike: () => void;
  placeholder?: string;
  notice?: React.ReactNode;
}

/** Show the characters left once the message gets this close to the limit. */
const COUNTER_FROM = 50;

/** The input row: Enter sends and keeps the focus in the input; the heart likes the draw. */
export function Composer({ canSend, canLike, maxLength, onSend, onLike, notice, placeholder }: Props) {
  const [text, setText] = useState('');
  const counterId = useId();
  const input = useRef<HTMLInputElement>(null);
  const hearts = useRef<HeartsHandle>(null);
  // Counted as the server counts it: code points after trimming.
  const length = [...text.trim()].length;
  const left = maxLength - length;
  const tooLong = left < 0;
  const sendable = canSend && text.trim() !== '' && !tooLong;

  const submit = () => {
    if (!sendable) return;
    onSend(text);
    setText('');
    input.current?.focus();
  };

  return (
    <div className="dc-composer">
      {notice}
      <form
        className="dc-composer__row"
        onSubmit={(e) => {
          e.preventDefault();
          submit();
        }}
      >
        <div className={`dc-input${tooLong ? ' dc-input--over' : ''}`}>
          <input
            ref={input}
            type="text"
            aria-label="Message"
            placeholder={placeholder ?? 'Send a message...'}
            value={text}
            disabled={!canSend}
            autoComplete="off"
            enterKeyHint="send"
            aria-describedby={left <= COUNTER_FROM ? counterId : undefined}
            aria-invalid={tooLong || undefined}
            onChange={(e) => setText(e.target.value)}
            onKeyDown={(e) => {
              // Enter sends (Shift+Enter too: the chat is one line). Not while an IME is composing a word.
              if (e.key === 'Enter' && !e.nativeEvent.isComposing) {
                e.preventDefault();
                submit();
              }
            }}
          />
          {left <= COUNTER_FROM && (
            <span id={counterId} className="dc-counter" aria-live="polite">
              {tooLong ? `${-left} too many` : `${left} left`}
            </span>
          )}
        </div>
        <span className="dc-like-draw">
          <Hearts ref={hearts} />
          <button
            type="button"
            className="dc-icon-btn dc-icon-btn--heart"
            aria-label="Like the draw"
            title="Send a heart"
            disabled={!canLike}
            onClick={() => {
              onLike();
              hearts.current?.burst();
            }}
          >
            <HeartIcon />
          </button>
        </span>
        <button type="submit" className="dc-send" disabled={!sendable} aria-label="Send">
          <SendIcon />
          <span className="dc-send__label" aria-hidden="true">
            Send
          </span>
        </button>
      </form>
    </div>
  );
}
