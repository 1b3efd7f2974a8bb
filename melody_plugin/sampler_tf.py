"""Bar-bounded sampling as one compiled TensorFlow loop: the same rules as sampler.py, no Python per note.

Entry points: `keras_step_fn(model)` (one token through a `build_model` network's layers) and
`compiled_sampler(tf, step_fn)`, which returns a `tf.function` that samples every output of a batch until each
has filled its steps exactly. Tokens that would overshoot, or leave a remainder no allowed token can fill, are
masked before sampling; temperature (0 = greedy), top-k and top-p as in sampler.py; `tf.random.stateless_*`
makes the same seed give the same ids. Used by `MelodyGenerator(..., sampler="tf")` and by the SavedModel's
serving signature. Beam search stays in sampler.py. A model with meter features is fed each row's bar position
(tracked in the loop, as sampler.py does) and bar length.
"""

from __future__ import annotations


def keras_step_fn(model):
    """(ids (batch,), [(h, c), ...], positions, bar_steps) -> (logits (batch, vocab), new state) through the model's
    own layers. positions and bar_steps (batch,) are used by a model with meter features (`step.meter_features`),
    clamped to its tables, and ignored otherwise."""
    import keras

    from melody_plugin.vocab import METER_FEATURE_SIZE

    names = {layer.name for layer in model.layers}
    embedding = model.get_layer("embedding")
    meter = "bar_position_embedding" in names
    if meter:
        position_embedding = model.get_layer("bar_position_embedding")
        bar_steps_embedding = model.get_layer("bar_steps_embedding")
        combine = model.get_layer("meter_add" if "meter_add" in names else "meter_concat")
    lstms = [layer for layer in model.layers if layer.name.startswith("lstm_")]
    dense = model.get_layer("logits")

    def step(ids, states, positions=None, bar_steps=None):
        x = embedding(ids)
        if meter:
            top = METER_FEATURE_SIZE - 1
            x = combine([x, position_embedding(keras.ops.minimum(positions, top)),
                         bar_steps_embedding(keras.ops.minimum(bar_steps, top))])
        new_states = []
        for layer, (h, c) in zip(lstms, states):
            x, (h, c) = layer.cell(x, [h, c], training=False)
            new_states.append((h, c))
        return dense(x), new_states

    step.units = [layer.units for layer in lstms]
    step.meter_features = meter
    return step


def compiled_sampler(tf, step_fn):
    """A tf.function(states, last_ids, remaining, durations, allowed, fillable, temperature, top_k, top_p, seed,
    positions, steps_per_bar) returning {"ids": (batch, max_tokens) int32 padded with -1, "log_likelihoods":
    (batch, max_tokens)}. positions (batch,): where the token after `last_ids` begins in its bar; steps_per_bar
    (batch,): the bar length; both are fed to a model with meter features and ignored otherwise."""
    neg = tf.constant(-1e9, tf.float32)

    def choose(logits, valid, temperature, top_k, top_p, seed, t):
        masked = tf.where(valid, logits, neg)
        vocab = tf.shape(masked)[1]
        scaled = masked / tf.maximum(temperature, 1e-6)
        k = tf.where(top_k > 0, tf.minimum(top_k, vocab), vocab)
        kth = tf.math.top_k(scaled, k).values[:, -1:]
        scaled = tf.where(scaled >= kth, scaled, neg)
        probs = tf.nn.softmax(scaled)
        sorted_probs = tf.math.top_k(probs, vocab).values
        before = tf.cumsum(sorted_probs, axis=1, exclusive=True)
        kept = tf.where(before < top_p, sorted_probs, tf.ones_like(sorted_probs) * 2.0)
        threshold = tf.reduce_min(kept, axis=1, keepdims=True)  # the smallest probability inside the nucleus
        scaled = tf.where(probs >= threshold, scaled, neg)
        sampled = tf.random.stateless_categorical(scaled, 1, seed=tf.stack([seed, tf.cast(t, tf.int64)]),
                                                  dtype=tf.int32)[:, 0]
        greedy = tf.argmax(masked, axis=1, output_type=tf.int32)
        return tf.where(temperature > 0, sampled, greedy), tf.nn.log_softmax(masked)

    @tf.function(reduce_retracing=True)
    def sample(states, last_ids, remaining, durations, allowed, fillable, temperature, top_k, top_p, seed,
               positions, steps_per_bar):
        max_tokens = tf.reduce_max(remaining)
        ids_out = tf.TensorArray(tf.int32, size=0, dynamic_size=True)
        ll_out = tf.TensorArray(tf.float32, size=0, dynamic_size=True)
        t = tf.constant(0)
        feed, rem, pos = last_ids, remaining, positions
        bar = tf.maximum(steps_per_bar, 1)
        while t < max_tokens and tf.reduce_any(rem > 0):  # autograph: one compiled while loop
            logits, new_states = step_fn(feed, states, pos, bar)
            left = rem[:, None] - durations[None, :]
            valid = allowed[None, :] & (left >= 0) & tf.gather(fillable, tf.maximum(left, 0))
            active = rem > 0
            valid = valid | ~active[:, None]  # finished rows draw a dummy token that is thrown away
            choice, logp = choose(logits, valid, temperature, top_k, top_p, seed, t)
            ll = tf.gather(logp, choice, axis=1, batch_dims=1)
            ids_out = ids_out.write(t, tf.where(active, choice, -1))
            ll_out = ll_out.write(t, tf.where(active, ll, 0.0))
            rem = rem - tf.where(active, tf.gather(durations, choice), 0)
            states = [(tf.where(active[:, None], nh, h), tf.where(active[:, None], nc, c))
                      for (nh, nc), (h, c) in zip(new_states, states)]
            feed = tf.where(active, choice, feed)
            pos = tf.where(active, tf.math.floormod(pos + tf.gather(durations, choice), bar), pos)
            t += 1
        # nothing to fill (steps 0, or fewer than the shortest token): an empty stack has no shape, so build one
        batch = tf.shape(last_ids)[0]
        ids = tf.cond(t > 0, lambda: tf.transpose(ids_out.stack()), lambda: tf.zeros([batch, 0], tf.int32))
        lls = tf.cond(t > 0, lambda: tf.transpose(ll_out.stack()), lambda: tf.zeros([batch, 0], tf.float32))
        return {"ids": ids, "log_likelihoods": lls}

    return sample
