// Lint rules that encode the architecture: packages are used through their public entry
// points, mcp-core never sees gRPC, the pure packages never see MCP or the apps, and switches
// over unions are exhaustive.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

const noDeepImports = {
  group: ['@kubeshark-mcp/*/src', '@kubeshark-mcp/*/src/*', '@kubeshark-mcp/*/dist/*', '**/packages/*/src/**', '**/apps/*/src/**'],
  message: 'Import another package through its public entry point (its index or a declared subpath), not its files.',
};

export default tseslint.config(
  { ignores: ['**/dist/**', '**/node_modules/**', 'packages/proto/src/gen/**', '**/*.js', '**/*.mjs'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ['**/*.ts'],
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      'no-restricted-imports': ['error', { patterns: [noDeepImports] }],
      '@typescript-eslint/switch-exhaustiveness-check': ['error', { considerDefaultExhaustiveForUnions: true }],
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', destructuredArrayIgnorePattern: '^_' }],
      '@typescript-eslint/consistent-type-imports': ['error', { fixStyle: 'inline-type-imports' }],
      'no-constant-condition': ['error', { checkLoops: false }],
    },
  },
  {
    files: ['packages/mcp-core/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [noDeepImports, { group: ['@grpc/*', '@kubeshark-mcp/proto', '@kubeshark-mcp/worker', '@kubeshark-mcp/hub'], message: 'mcp-core knows nothing of gRPC or the apps: declare a port and let the hub implement it.' }],
        },
      ],
    },
  },
  {
    files: ['packages/capture/**/*.ts', 'packages/proto/**/*.ts', 'packages/dissectors/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [noDeepImports, { group: ['@kubeshark-mcp/mcp-core', '@kubeshark-mcp/mcp-core/*', '@kubeshark-mcp/worker', '@kubeshark-mcp/hub', '@modelcontextprotocol/*', 'fastify'], message: 'capture, dissectors and proto know nothing of MCP or the apps.' }],
        },
      ],
    },
  },
);
