#!/usr/bin/env node
// Thin launcher: the CLI is compiled TypeScript under dist/.
import '../dist/src/cli.js';
