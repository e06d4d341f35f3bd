// The peer's side of `mlx-mesh bench transport`: on a link whose other end said role 'bench', answer
// each bench-echo as it asks (the tensor back, an empty ack, or nothing). Links from peers never get here.
import type { Link } from './link.ts';
import type { Tensor } from './tensor.ts';

const EMPTY: Tensor = { dtype: 'uint8', shape: [0], data: new Uint8Array(0) };

export function answerBenchEcho(link: Link): void {
  link.on('message', (msg) => {
    if (msg.type !== 'bench-echo' || msg.answer === 'none') return;
    const tensor = msg.answer === 'echo' ? msg.tensor : EMPTY;
    link.post({ type: 'bench-echo', seq: msg.seq, answer: 'none', tensor });
  });
  link.start();
}
