import { fileURLToPath } from 'node:url';
import react from '@vitejs/plugin-react';
import { defineConfig, type Plugin } from 'vite';

const web = fileURLToPath(new URL('./web', import.meta.url));
const api = process.env.DRAW_CHAT_API ?? 'http://127.0.0.1:8000';

const schemaCompiler = fileURLToPath(new URL('./src/protocol/compile.ts', import.meta.url));
const interpretedSchemas = fileURLToPath(new URL('./web/src/protocol-compile.ts', import.meta.url));

/**
 * The browser bundles check the protocol's events with the schemas as they are: src/protocol/compile.ts (the
 * schema compiler, for Node.js) is swapped for web/src/protocol-compile.ts, whichever module imports it. Why:
 * see those two files.
 */
const interpretedProtocolChecks: Plugin = {
  name: 'interpreted-protocol-checks',
  enforce: 'pre',
  async resolveId(source, importer, options) {
    if (!source.endsWith('/compile.js')) return null;
    const resolved = await this.resolve(source, importer, { ...options, skipSelf: true });
    return resolved?.id === schemaCompiler ? interpretedSchemas : null;
  },
};

// Two builds from one config: `vite build` makes the demo page (web/dist, hashed files under assets/);
// `vite build --mode embed` makes the self-contained embed bundle web/dist/embed/draw-chat.js.
export default defineConfig(({ mode }) => ({
  root: web,
  plugins: [interpretedProtocolChecks, react()],
  server: {
    // `npx vite` serves the page with hot reload against a server started with `npm start`.
    fs: { allow: ['..'] },
    proxy: {
      '/live-chat': { target: api, ws: true },
      '/docs': api,
    },
  },
  build:
    mode === 'embed'
      ? {
          outDir: 'dist/embed',
          emptyOutDir: false,
          copyPublicDir: false,
          // A library build keeps whitespace by default; this bundle is loaded as is by draw platforms' pages.
          minify: true,
          rolldownOptions: { output: { minify: true } },
          lib: {
            entry: 'src/embed.ts',
            formats: ['es' as const],
            fileName: () => 'draw-chat.js',
          },
        }
      : { outDir: 'dist', emptyOutDir: true },
  // React reads process.env.NODE_ENV; a library build leaves it alone unless told.
  define: mode === 'embed' ? { 'process.env.NODE_ENV': JSON.stringify('production') } : {},
}));
