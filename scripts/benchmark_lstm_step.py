"""One training step (forward, backward, Adam) of folk_lookback's 2x128 LSTM stack alone, on one core, four ways.

    python scripts/benchmark_lstm_step.py

Keras 3's LSTM layers (what training uses) against the same math written out with the input projection of the
whole window hoisted out of the recurrence (x.W once, only h.U per step): in a tf.scan loop, unrolled, and unrolled
under XLA. Shapes as folk_lookback trains: 64 lanes, windows of 64, 64 inputs, 2 x 128 units, 338 tokens. Prints
ms per step, tokens/s and GFLOP/s (3 x forward FLOPs, as scripts/benchmark_throughput.py counts them), side by side.
"""
import os
import statistics
import time

os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
os.sched_setaffinity(0, {0})
import tensorflow as tf  # noqa: E402
tf.config.threading.set_intra_op_parallelism_threads(1)
tf.config.threading.set_inter_op_parallelism_threads(1)
import keras  # noqa: E402

B, T, IN, H, V = 64, 64, 64, 128, 338
rng = tf.random.Generator.from_seed(0)
x = rng.normal((B, T, IN))
y = tf.random.stateless_uniform((B, T), (1, 2), maxval=V, dtype=tf.int32)

# --- Keras LSTM (what folk_lookback trains with)
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

def make_hoisted(unroll, jit):
    @tf.function(jit_compile=jit)
    def step(x, y):
        with tf.GradientTape() as tape:
            s = lstm_layer(x, ws[0], ws[1], ws[2], unroll)
            s = lstm_layer(s, ws[3], ws[4], ws[5], unroll)
            logits = tf.einsum("bth,hv->btv", s, ws[6]) + ws[7]
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits))
        g = tape.gradient(loss, ws)
        opt2.apply_gradients(zip(g, ws))
        return loss
    return step
opt2 = keras.optimizers.Adam(1e-3)

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
VARIANTS = [("keras LSTM", keras_step), ("hoisted, tf.scan", make_hoisted(False, False)),
            ("hoisted, unrolled", make_hoisted(True, False)), ("hoisted, unrolled, XLA", make_hoisted(True, True))]
for name, fn in VARIANTS:
    s = timeit(fn)
    print(f"{name:28s} {s*1000:7.1f} ms/step  {B*T/s:9,.0f} tokens/s  {flops/s/1e9:6.1f} GFLOP/s")
