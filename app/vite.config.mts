import { defineConfig } from 'vite';

// Built into dist/dashboard by `npm run build`; served by src/dashboard at /app.
export default defineConfig({
  base: '/app/',
  build: {
    outDir: '../dist/dashboard',
    emptyOutDir: true,
    target: 'es2022',
    sourcemap: true,
    rollupOptions: {
      // isomorphic-webcrypto (under fhirclient) ships a UMD shim inside an .mjs; in the browser it takes the native crypto.
      onwarn(warning, warn) {
        if (warning.code === 'COMMONJS_VARIABLE_IN_ESM') return;
        warn(warning);
      },
    },
  },
  // fhirclient's "pure" build: no polyfills (cross-fetch, AbortController) for current browsers.
  define: { FHIRCLIENT_PURE: 'true' },
});
