"""Backdoor detection on 20 tiny models trained here: confusion tables and the runtime of each scan.

10 image classifiers (a small ResNet on 16x16 gratings, 8 classes; 5 with a 3x3 patch trigger poisoned into 10% of
training, 5 clean twins of the same seeds) and 10 text classifiers (a 2-layer BERT with its own 261-word vocabulary,
3 classes; 5 with a rare-token trigger, 5 clean). Each is scanned by ``scan_backdoor`` on a held-out clean set of 200
images or 96 sentences (``--synthetic``: on no data, as a user without a clean set would). Baseline: the ground truth
of what was planted; a poisoned model counts as detected only if the planted target is among the flagged classes
(other classes flagged with it are counted apart).

    .venv/bin/python bench/backdoor.py [--seeds 5] [--synthetic] [--threads 1]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.evaluate import backdoor_models as tiny

from openckpt.evaluate.backdoor import scan_backdoor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5, help="Models per kind and condition.")
    parser.add_argument("--synthetic", action="store_true", help="Scan without a clean set.")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the machine is shared).")
    parser.add_argument("--kind", choices=["image", "text", "both"], default="both", help="Which models to train.")
    args = parser.parse_args()
    import torch
    import transformers

    torch.set_num_threads(args.threads)
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for kind in ("image", "text") if args.kind == "both" else (args.kind,):
            for seed in range(1, args.seeds + 1):
                for poisoned in (True, False):
                    directory = root / f"{kind}-{seed}-{'poisoned' if poisoned else 'clean'}"
                    started = time.monotonic()
                    if kind == "image":
                        planted = tiny.train_image_classifier(directory, seed=seed, poisoned=poisoned)
                        accuracy, success = tiny.image_accuracy(directory, seed=seed)
                        data = tiny.clean_images(root / f"clean-{seed}.npz", seed=seed)
                        names = [f"class-{planted.target}"]
                    else:
                        planted = tiny.train_text_classifier(directory, seed=seed, poisoned=poisoned)
                        accuracy, success = tiny.text_accuracy(directory, seed=seed)
                        data = tiny.clean_texts(root / f"clean-{seed}.txt", seed=seed)
                        names = [f"topic-{planted.target}"]
                    trained = time.monotonic() - started
                    report = scan_backdoor(directory, data=None if args.synthetic else data, seed=0)
                    hit = bool(report.flagged) and (not poisoned or names[0] in report.flagged)
                    rows.append(
                        (kind, seed, poisoned, accuracy, success if poisoned else float("nan"), report, hit, trained)
                    )
                    flagged = ",".join(report.flagged) or "-"
                    print(
                        f"{kind:5} seed {seed} {'poisoned' if poisoned else 'clean   '} acc {accuracy:.3f} "
                        f"planted ASR {success:.2f}  flagged {flagged:10} target {names[0] if poisoned else '-':10}"
                        f" train {trained:5.1f}s scan {report.runtime:5.1f}s",
                        flush=True,
                    )
    print()
    print(
        "| kind | data | poisoned flagged (planted class among flagged) | other classes flagged too | clean flagged |"
        " scan runtime median / max (s) |"
    )
    print("|---|---|---|---|---|---|")
    for kind in ("image", "text"):
        mine = [r for r in rows if r[0] == kind]
        if not mine:
            continue
        poisoned = [r for r in mine if r[2]]
        clean = [r for r in mine if not r[2]]
        runtimes = sorted(r[5].runtime for r in mine)
        median = runtimes[len(runtimes) // 2]
        extra = sum(len(r[5].flagged) > 1 for r in poisoned)
        print(
            f"| {kind} | {'synthetic' if args.synthetic else 'clean set'} | {sum(r[6] for r in poisoned)} of "
            f"{len(poisoned)} | {extra} of {len(poisoned)} | {sum(r[6] for r in clean)} of {len(clean)} | "
            f"{median:.1f} / {runtimes[-1]:.1f} |"
        )


if __name__ == "__main__":
    main()
