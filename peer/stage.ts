// One peer's part of a request: run our layers on what arrived, then pass the hidden states to the
// next rank, or (on the last stage) send the sampled token id back to the request's origin.
// Any failure goes back to the origin as `request-error`, so the client gets an error, not a hang.
import { isMeshError, meshError } from '../core/errors.ts';
import type { Message, MessageOf } from '../transport/messages.ts';
import { wallMs } from './request-trace.ts';
import type { EngineSupervisor } from './supervisor.ts';

/** One step through this stage, for metrics: where it came from and went, time and bytes. */
export interface StageHop {
  from: string;
  to: string;
  computeMs: number;
  transferMs: number;
  bytesIn: number;
  bytesOut: number;
  /** Sequence positions computed (prompt chunk length, or 1 while decoding). */
  tokens: number;
}

export interface StageContext {
  selfId: string;
  selfName: string;
  plan: MessageOf<'plan'> | null;
  engine: Pick<EngineSupervisor, 'forward'>;
  deliver(to: string, msg: Message): Promise<void>;
  onHop?(hop: StageHop): void;
}

export async function runStage(msg: MessageOf<'forward'>, ctx: StageContext): Promise<void> {
  const { plan } = ctx;
  const replyError = (code: string, message: string) =>
    ctx.deliver(msg.origin, { type: 'request-error', request: msg.request, code, message }).catch(() => {});
  const index = plan?.stages.findIndex((s) => s.id === ctx.selfId) ?? -1;
  if (!plan || plan.version !== msg.planVersion || index < 0) {
    return replyError('REQUEST_FAILED', `peer ${ctx.selfId} is not a stage of plan ${msg.planVersion}`);
  }
  const receivedAt = wallMs();
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
    const bytesIn = msg.hidden?.data.byteLength ?? 0;
    const hop = { peer: ctx.selfId, computeMs: wallMs() - receivedAt, transferMs: msg.sentAt === undefined ? 0 : Math.max(0, receivedAt - msg.sentAt), bytes: bytesIn };
    const trace = [...(msg.trace ?? []), hop];
    const from = msg.trace?.at(-1)?.peer ?? msg.origin;
    const tokens = msg.tokens?.length ?? msg.hidden?.shape[1] ?? 0;
    const observe = (to: string, bytesOut: number) =>
      ctx.onHop?.({ from, to, computeMs: hop.computeMs, transferMs: hop.transferMs, bytesIn, bytesOut, tokens });
    if (next) {
      if (!out.hidden) throw meshError('ENGINE_ERROR', 'the engine returned no hidden states');
      observe(next.id, out.hidden.data.byteLength);
      await ctx.deliver(next.id, { ...msg, tokens: undefined, hidden: out.hidden, trace });
    } else if (msg.sample) {
      if (out.token === undefined) throw meshError('ENGINE_ERROR', 'the engine returned no token');
      observe(msg.origin, 0);
      await ctx.deliver(msg.origin, { type: 'token', request: msg.request, step: msg.step, token: out.token, trace });
    } else {
      observe(msg.origin, 0);
    }
  } catch (err) {
    const code = isMeshError(err) ? err.code : 'ENGINE_ERROR';
    await replyError(code, `${ctx.selfName}: ${(err as Error).message}`);
  }
}
