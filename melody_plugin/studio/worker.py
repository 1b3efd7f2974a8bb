"""One studio request -> one answer, in a process of its own: read a primer, generate, write files, engrave.

Run as `python -m melody_plugin.studio.worker` with a JSON request on stdin; prints one JSON answer on stdout.
The server (jobs.py) starts one per request, so a slow generation can be stopped by ending its process, file
reading keeps its time limits (they need a main thread), and two requests never share a model's state.
Actions: "primer" (read an uploaded file and describe it) and "generate" (MIDI, ABC, MusicXML and the JSON
sidecar under the request's `job_dir`, and per output the notes with their times and the score as SVG).
Every error reaches the page as one line that names the file by the name the user gave it; an unexpected one is
written to the server's log, not shown.
"""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path

from melody_plugin.errors import MelodyPluginError
from melody_plugin.generate import outputs
from melody_plugin.generate.generator import MelodyGenerator
from melody_plugin.generate.sampler import Constraints, SamplingOptions, scale_key
from melody_plugin.music import melody as melody_lib
from melody_plugin.music.melody import Melody
from melody_plugin.notation import score
from melody_plugin.runtime.quiet import quiet_third_party

MAX_REQUEST_BYTES = 1 << 20
FORMATS = ("mid", "abc", "musicxml")


def melody_notes(melody: Melody, primer_steps: int) -> list[dict]:
    """The pitched notes with their grid steps and times through the tempo map (what the page draws and plays)."""
    notes, step = [], 0
    for note in melody.notes:
        if not note.is_rest:
            end = step + note.duration_steps
            notes.append({"pitch": note.pitch, "start_step": step, "duration_steps": note.duration_steps,
                          "start_s": round(melody.seconds_at_step(step), 6),
                          "end_s": round(melody.seconds_at_step(end), 6), "primer": step < primer_steps})
        step += note.duration_steps
    return notes


def describe(melody: Melody) -> dict:
    num, den = melody.time_signature
    return {"time_signature": [num, den], "key": melody.key_name, "qpm": melody.qpm,
            "steps_per_bar": melody.steps_per_bar, "total_steps": melody.total_steps,
            "bars": round(melody.num_bars, 2), "num_notes": melody.num_pitched}


def _load_primer(gen: MelodyGenerator, request: dict) -> tuple[Melody, list[str]]:
    """The request's primer: an uploaded file, typed text in the meter asked for, or none (an empty bar)."""
    meter = melody_lib.parse_time_signature(request.get("time_signature") or "4/4")
    qpm = request.get("qpm")
    if request.get("primer_path"):
        primer, warnings = gen.load_primer(request["primer_path"])
        return (primer.with_tempo(qpm) if qpm else primer), warnings
    if (request.get("primer_text") or "").strip():
        return gen.primer_from_text(request["primer_text"], meter, qpm), []
    return gen.empty_primer(meter, qpm, scale_key(request.get("scale"))), []


def _score_svg(melody: Melody, primer_steps: int) -> tuple[str | None, str | None]:
    """(svg, None), or (None, why) where verovio is missing or refuses: the page still draws the piano roll."""
    if not score.available():
        return None, f"sheet music needs verovio: {score.INSTALL_HINT}"
    try:
        return score.melody_to_svg(melody, primer_steps, header=False), None
    except MelodyPluginError as e:
        return None, str(e)


def primer_action(request: dict) -> dict:
    gen = MelodyGenerator.load(request.get("model_path"))
    primer, warnings = _load_primer(gen, request)
    return {"primer": describe(primer), "notes": melody_notes(primer, primer.total_steps), "warnings": warnings}


def generate_action(request: dict) -> dict:
    gen = MelodyGenerator.load(request.get("model_path"))
    primer, warnings = _load_primer(gen, request)
    sampling = SamplingOptions(temperature=float(request.get("temperature", 1.0)),
                               top_p=float(request.get("top_p", 1.0)),
                               repetition=float(request.get("repetition", 0.0)), seed=int(request["seed"]))
    constraints = Constraints.parse(scale=request.get("scale") or None, pitch_range=request.get("pitch_range") or None)
    num_bars, num_outputs = int(request["num_bars"]), int(request["num_outputs"])
    if scale_key(request.get("scale")) and not primer.notes:  # a tune from nothing in the mode asked for
        generations, in_mode = gen.generate_in_mode(primer, num_bars, num_outputs, sampling, constraints)
        if in_mode < num_outputs:
            warnings.append(f"{num_outputs - in_mode} of {num_outputs} tunes are in {generations[-1].melody.key_name}, "
                            f"not {primer.key_name}: the model chose that mode every time")
    else:
        generations = gen.generate(primer, num_bars, num_outputs, sampling, constraints)
    warnings += [f"primer note changed to fit the vocabulary: {c.describe()}" for c in generations[0].oov_changes]
    job_dir = Path(request["job_dir"])
    sidecar = {"model": request.get("model_name", gen.source), "model_step": gen.step, "studio": {
        k: request.get(k) for k in ("primer_name", "primer_text", "time_signature", "qpm", "num_bars", "num_outputs",
                                    "temperature", "top_p", "repetition", "scale", "pitch_range")}}
    paths = outputs.write_generations(generations, job_dir, "melody", True, (), sidecar, FORMATS)
    answers = []
    for path, out in zip(paths, generations):
        svg, why = _score_svg(out.melody, out.primer_steps)
        answers.append({"files": {f: path.with_suffix(outputs.FORMATS[f]).name for f in FORMATS},
                        "notes": melody_notes(out.melody, out.primer_steps), "primer_steps": out.primer_steps,
                        "total_bars": out.total_bars, "seed": out.seed, "svg": svg, "score_error": why,
                        "log_likelihood": round(sum(out.log_likelihoods), 3), **describe(out.melody)})
    return {"outputs": answers, "warnings": warnings, "primer": describe(primer)}


ACTIONS = {"primer": primer_action, "generate": generate_action}


def _as_named(text: str, request: dict) -> str:
    """The user knows the file by the name they gave it, not by the studio's temporary path."""
    if request.get("primer_path"):
        return text.replace(str(request["primer_path"]), request.get("primer_name") or "primer")
    return text


def handle(request: dict) -> dict:
    """The answer to one request: the action's result, or {"error": one line} (file paths named as the user did)."""
    try:
        answer = ACTIONS[request["action"]](request)
    except MelodyPluginError as e:
        return {"error": _as_named(str(e), request)}
    answer["warnings"] = [_as_named(w, request) for w in answer["warnings"]]
    return answer


def main() -> int:
    quiet_third_party()
    try:
        request = json.loads(sys.stdin.read(MAX_REQUEST_BYTES))
        answer = handle(request)
    except Exception:  # the server logs it; the page says only that something went wrong
        traceback.print_exc()
        answer = {"error": "internal error in the generator (the studio's terminal shows the details)"}
    sys.stdout.write(json.dumps(answer))
    return 0


if __name__ == "__main__":
    sys.exit(main())
