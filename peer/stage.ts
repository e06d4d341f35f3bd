// One peer's part of a request: run our layers on what arrived, then pass the hidden states to the
// next rank, or (on the last stage) send the sampled token id back to the request's origin.
// Any failure goes back to the origin as `request-error`, so the client gets an error, not a hang.
import { isMeshError, meshError } from '../core/errors.ts';
import type { Message, MessageOf } from '../transport/messages.ts';
import type { EngineSupervisor } from './supervisor.ts';

export interface StageContext {
  selfId: string;
  selfName: string;
  plan: MessageOf<'plan'> | null;
  engine: Pick<EngineSupervisor, 'forward'>;
  deliver(to: string, msg: Message): Promise<void>;
}

export async function runStage(msg: MessageOf<'forward'>, ctx: StageContext): Promise<void> {
  const { plan } = ctx;
  const replyError = (code: string, message: string) =>
    ctx.deliver(msg.origin, { type: 'request-error', request: msg.request, code, message }).catch(() => {});
  const index = plan?.stages.findIndex((s) => s.id === ctx.selfId) ?? -1;
  if (!plan || plan.version !== msg.planVersion || index < 0) {
    return replyError('REQUEST_FAILED', `peer ${ctx.selfId} is not a stage of plan ${msg.planVersion}`);
  }
  try {
    const out = await ctx.engine.forward({
      request: msg.request,
      offset: msg.offset,
      tokens: msg.tokens,
      hidden: msg.hidden,
      sample: msg.sample,
      sampling: { temperature: msg.sampling.temperature, top_p: msg.sampling.topP, seed: msg.sampling.seed },
    });
    const next = plan.stages[index + 1];
    if (next) {
      if (!out.hidden) throw meshError('ENGINE_ERROR', 'the engine returned no hidden states');
      await ctx.deliver(next.id, { ...msg, tokens: undefined, hidden: out.hidden });
    } else if (msg.sample) {
      if (out.token === undefined) throw meshError('ENGINE_ERROR', 'the engine returned no token');
      await ctx.deliver(msg.origin, { type: 'token', request: msg.request, step: msg.step, token: out.token });
    }
  } catch (err) {
    const code = isMeshError(err) ? err.code : 'ENGINE_ERROR';
    await replyError(code, `${ctx.selfName}: ${(err as Error).message}`);
  }
}
