import { fileURLToPath } from 'node:url';

export const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));
export const PYTHON = `${REPO_ROOT}.venv/bin/python`;
export const PARA = `${REPO_ROOT}.venv/bin/para`;
