// The one jest preset for every package: TypeScript is transpiled by ts-jest without type
// checking (tsc does that in `build`/`typecheck`), so tests start fast and stay in step with the
// compiler settings in tsconfig.base.json.
/** @type {import('jest').Config} */
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/src', '<rootDir>/test'],
  testMatch: ['**/*.test.ts'],
  transform: {
    '^.+\\.ts$': ['ts-jest', { tsconfig: '<rootDir>/tsconfig.json', diagnostics: false }],
  },
  moduleFileExtensions: ['ts', 'js', 'json'],
  testTimeout: 30000,
};
