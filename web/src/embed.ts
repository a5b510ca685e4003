/**
 * The embeddable bundle (web/dist/embed/draw-chat.js): `mountLiveChat(element, { baseUrl, getToken })`, and
 * the `<draw-chat>` custom element, defined on import. React and the CSS are inside; nothing else to load.
 */
import { defineDrawChatElement } from './mount.js';

export { ChatClient } from '../../src/client/index.js';
export {
  DrawChatElement,
  defineDrawChatElement,
  type MountedChat,
  type MountOptions,
  mountLiveChat,
} from './mount.js';

defineDrawChatElement();
