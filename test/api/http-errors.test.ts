// What a client sees for each kind of failure: a cluster or engine that cannot serve right now is a 503
// (clients retry it), a missing chat template a 400 that says what to use, anything else a 500 with the code.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { meshError } from '../../core/errors.ts';
import { HttpError, toHttpError } from '../../src/api/http.ts';

const seen = (err: unknown) => {
  const e = toHttpError(err);
  return { status: e.status, type: e.type, code: e.code };
};

test('no plan yet, or an engine crashed or restarting, is a 503 a client can retry', () => {
  assert.equal(seen(meshError('PLAN_FAILED', 'waiting for b to load its layers')), { status: 503, type: 'server_error', code: 'cluster_not_ready' });
  assert.equal(seen(meshError('ENGINE_FAILED', 'engine tokenize: the engine exited (signal SIGKILL)')), { status: 503, type: 'server_error', code: 'engine_failed' });
});

test('a model without a chat template is a 400 naming the endpoint to use', () => {
  const e = toHttpError(meshError('ENGINE_ERROR', "this model's tokenizer has no chat template", { engineCode: 'NO_CHAT_TEMPLATE' }));
  assert.is(e.status, 400);
  assert.match(e.message, /\/v1\/completions/);
});

test('other failures are a 500 with the mesh code, or internal_error; an HttpError passes through', () => {
  assert.equal(seen(meshError('ENGINE_TIMEOUT', 'engine forward: no answer within 120 s')), { status: 500, type: 'server_error', code: 'engine_timeout' });
  assert.equal(seen(new Error('boom')), { status: 500, type: 'server_error', code: 'internal_error' });
  const own = new HttpError(404, 'no such model', 'invalid_request_error', 'model_not_found');
  assert.is(toHttpError(own), own);
});

test.run();
