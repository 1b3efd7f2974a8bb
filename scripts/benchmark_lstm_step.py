"""One training step (forward, backward, Adam) of folk_lookback's 2x128 LSTM stack alone, on one core, six ways.

    python scripts/benchmark_lstm_step.py
    LANES=64 python scripts/benchmark_lstm_step.py

Keras 3's own LSTM layers against the same math with the input projection of the whole window hoisted out of the
recurrence (x.W once, only h.U per step): melody_plugin's training path (`model/fast_lstm.py`: a hand-written
backward pass, every weight gradient one large matmul after the loop; its gradients are checked against Keras'),
in a tf.scan loop, unrolled, and unrolled under XLA; and TensorFlow's fused BlockLSTMV2 kernel.
Shapes as folk_lookback trains: 32 lanes (LANES=N for others), windows of 64, 64 inputs, 2 x 128 units, 338
tokens. Prints ms per step, tokens/s and GFLOP/s (3 x forward FLOPs, as scripts/benchmark_throughput.py counts
them), side by side.
"""
import os
import statistics
import sys
import time
from pathlib import Path

os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
os.sched_setaffinity(0, {0})
import tensorflow as tf  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from melody_plugin.model import fast_lstm  # noqa: E402
tf.config.threading.set_intra_op_parallelism_threads(1)
tf.config.threading.set_inter_op_parallelism_threads(1)
import keras  # noqa: E402

B = int(os.environ.get("LANES", 32))
T, IN, H, V = 64, 64, 128, 338
rng = tf.random.Generator.from_seed(0)
x = rng.normal((B, T, IN))
y = tf.random.stateless_uniform((B, T), (1, 2), maxval=V, dtype=tf.int32)

# --- Keras' own LSTM layers
inp = keras.Input((T, IN))
h1 = keras.layers.LSTM(H, return_sequences=True)(inp)
h2 = keras.layers.LSTM(H, return_sequences=True)(h1)
out = keras.layers.Dense(V)(h2)
km = keras.Model(inp, out)
opt = keras.optimizers.Adam(1e-3)

@tf.function
def keras_step(x, y):
    with tf.GradientTape() as tape:
        logits = km(x, training=True)
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits))
    g = tape.gradient(loss, km.trainable_variables)
    opt.apply_gradients(zip(g, km.trainable_variables))
    return loss

# --- hoisted: x @ W for the whole window, then only h @ U in the loop (same weights)
ws = list(km.trainable_variables)
def lstm_layer(seq, kernel, rkernel, bias, unroll):
    xw = tf.einsum("bti,ig->btg", seq, kernel) + bias  # (B, T, 4H): one large matmul
    h, c = tf.zeros((B, H)), tf.zeros((B, H))
    outs = []
    if unroll:
        for t in range(T):
            z = xw[:, t] + tf.matmul(h, rkernel)
            i, f, g, o = tf.split(z, 4, axis=1)
            c = tf.sigmoid(f) * c + tf.sigmoid(i) * tf.tanh(g)
            h = tf.sigmoid(o) * tf.tanh(c)
            outs.append(h)
        return tf.stack(outs, 1)
    xs = tf.transpose(xw, (1, 0, 2))
    def step(carry, xt):
        h, c = carry
        z = xt + tf.matmul(h, rkernel)
        i, f, g, o = tf.split(z, 4, axis=1)
        c = tf.sigmoid(f) * c + tf.sigmoid(i) * tf.tanh(g)
        h = tf.sigmoid(o) * tf.tanh(c)
        return h, c
    hs, _ = tf.scan(step, xs, initializer=(h, c))
    return tf.transpose(hs, (1, 0, 2))

def make_step(stack, jit=False):
    """A compiled training step of `stack` (x -> the second layer's outputs, batch-major), the logits and Adam."""
    @tf.function(jit_compile=jit)
    def step(x, y):
        with tf.GradientTape() as tape:
            logits = tf.einsum("bth,hv->btv", stack(x), ws[6]) + ws[7]
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits))
        g = tape.gradient(loss, ws)
        opt2.apply_gradients(zip(g, ws))
        return loss
    return step


def make_hoisted(unroll, jit):
    return make_step(lambda x: lstm_layer(lstm_layer(x, ws[0], ws[1], ws[2], unroll), ws[3], ws[4], ws[5], unroll),
                     jit)
opt2 = keras.optimizers.Adam(1e-3)

def lstm_sequence(tf, xs, kernel, rkernel, bias):
    """One LSTM layer over time-major xs (T, B, in) on melody_plugin's training path (`fast_lstm.lstm_sequence`):
    the input projection and every weight gradient one large matmul each outside the loops, only h.U (forward) and
    dz.U^T (backward) inside them."""
    zero = tf.zeros((xs.shape[1], H))
    weights = [tf.convert_to_tensor(w) for w in (kernel, rkernel, bias)]
    return fast_lstm.lstm_sequence(tf, xs, *weights, zero, zero)[0]


def block_sequence(tf, xs, kernel, rkernel, bias):
    """One LSTM layer over time-major xs with TensorFlow's fused `BlockLSTMV2` kernel (gates i, f, c, o as Keras)."""
    zero = tf.zeros((xs.shape[1], H))
    return tf.raw_ops.BlockLSTMV2(seq_len_max=tf.constant(xs.shape[0], tf.int64), x=xs, cs_prev=zero, h_prev=zero,
                                  w=tf.concat([kernel, rkernel], 0), wci=tf.zeros(H), wcf=tf.zeros(H),
                                  wco=tf.zeros(H), b=bias)[6]


def time_major_stack(layer):
    """x (batch, time, in) -> the two layers of `layer` (a time-major sequence function) -> (batch, time, H)."""
    def stack(x):
        s = layer(tf, layer(tf, tf.transpose(x, (1, 0, 2)), ws[0], ws[1], ws[2]), ws[3], ws[4], ws[5])
        return tf.transpose(s, (1, 0, 2))
    return stack


@tf.function
def gradient_gap(x, y):
    """The largest relative difference between Keras' gradients and the hand-written backward pass's."""
    def loss_of(logits):
        return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits))
    with tf.GradientTape() as tape:
        reference = loss_of(km(x))
    with tf.GradientTape() as tape2:
        mine = loss_of(tf.einsum("bth,hv->btv", time_major_stack(lstm_sequence)(x), ws[6]) + ws[7])
    return tf.reduce_max([tf.reduce_max(tf.abs(a - b)) / tf.reduce_max(tf.abs(a))
                          for a, b in zip(tape.gradient(reference, ws), tape2.gradient(mine, ws))])


def timeit(fn, n=20):
    for _ in range(2):  # tracing and warm-up
        fn(x, y)
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        fn(x, y).numpy()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)

flops = 3 * (2 * 4 * H * (IN + H) + 2 * 4 * H * (H + H) + 2 * H * V) * B * T
print(f"the training path (fast_lstm): gradients within {float(gradient_gap(x, y)):.1e} (relative) of Keras'")
VARIANTS = [("Keras' own LSTM", keras_step),
            ("melody_plugin's training path (fast_lstm)", make_step(time_major_stack(lstm_sequence))),
            ("BlockLSTMV2 (fused kernel)", make_step(time_major_stack(block_sequence))),
            ("hoisted, tf.scan", make_hoisted(False, False)),
            ("hoisted, unrolled", make_hoisted(True, False)), ("hoisted, unrolled, XLA", make_hoisted(True, True))]
for name, fn in VARIANTS:
    s = timeit(fn)
    print(f"{name:42s} {s*1000:7.1f} ms/step  {B*T/s:9,.0f} tokens/s  {flops/s/1e9:6.1f} GFLOP/s")
