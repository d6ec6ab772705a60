// adapter_config.json parsing: the PARA variants the engine does not serve are refused by name, the paper's
// values of the same settings are accepted.
import { describe, expect, it } from 'vitest';
import { AdapterConfigError, parseAdapterConfig } from '../src/registry/adapter-config.js';

const paper = { peft_type: 'PARA', r: 12, pooler: 'mean', targets: ['q', 'v', 'up'] };
const parse = (config: object) => parseAdapterConfig(Buffer.from(JSON.stringify(config)));

describe('PARA adapter configs', () => {
  it('accepts the paper form, with or without its variant settings spelled out', () => {
    expect(parse(paper).kind).toBe('para');
    const explicit = { ...paper, static_bias: false, scale_form: 'linear', generator_input: 'normed', granularity: 'channel', pool_layer: null };
    expect(parse(explicit).config).toMatchObject(explicit);
    expect(parse({ ...paper, targets: ['q', 'up'] }).kind).toBe('para');
  });

  it.each([
    ['static_bias', { static_bias: true }],
    ['scale_form', { scale_form: 'tanh' }],
    ['generator_input', { generator_input: 'residual' }],
    ['granularity', { granularity: 'head' }],
    ['pool_layer', { pool_layer: 20 }],
    ['targets', { targets: ['q', 'k', 'v', 'up'] }],
  ])('refuses the variant setting %s by name', (field, change) => {
    expect(() => parse({ ...paper, ...change })).toThrow(AdapterConfigError);
    expect(() => parse({ ...paper, ...change })).toThrow(new RegExp(`${field}.*paper's form of PARA`));
  });

  it('refuses an unknown target and an unknown key as before', () => {
    expect(() => parse({ ...paper, targets: ['q', 'gate'] })).toThrow(/targets must be among q, v, up/);
    expect(() => parse({ ...paper, colour: 'blue' })).toThrow(/colour/);
  });
});
