"""docs/RESEARCH.md, run 49: attack the three protected subjects of the 3-subject row's seed 2 on a saved model, in
the experiment's order and in one process, and print each case's rate, to compare cross 2300's with its attack
alone (`research/probes/carrier_bound.py --seed 4 --behaviour target --attack-seed 2`).

    .venv/bin/python research/logs/order_probe_3subj_s2.py runs/noise/s2_300/model
"""

import json
import sys
import tempfile
from pathlib import Path

import torch

from persguard_core.judge.toy import ToyJudge
from persguard_core.model_io import load_pipeline
from persguard_core.verify.run import Case, Verifier
from research.presets import PRESETS
from research.subjects import attack_setting, protection_spec, subjects_for_seed

torch.set_num_threads(1)
preset = PRESETS["carrier"]
setting = next(s for s in preset.settings if s.name == "encoder/3-subjects/mixed/800-steps")
chosen = [subjects_for_seed(2 + i, "eval") for i in range(3)]
with tempfile.TemporaryDirectory() as tmp:
    spec = protection_spec(setting, preset, 2, Path(tmp))
verifier = Verifier(load_pipeline("builtin"), ToyJudge.load(), n_images=16, steps=25)
pipe = load_pipeline(sys.argv[1])
attack = attack_setting(setting, 2)
for (subject, _, _), s in zip(chosen, spec.subjects, strict=True):
    case = Case(s.name, subject.class_noun, subject.views(6, seed=0), subject.views(16, seed=1), s.behaviour)
    r = verifier.run_case(pipe, case, attack, [x.behaviour for x in spec.subjects])
    print(json.dumps({"case": r.case, "rate": r.protective_rate, "similarity": round(r.similarity, 3)}), flush=True)
