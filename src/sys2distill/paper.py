"""The paper's published numbers, vendored as data: the anchors every report prints beside ours.

Source: Ping Yu, Jing Xu, Jason Weston, Ilia Kulikov. "Distilling System 2 into System 1".
arXiv:2407.06023v1, 2024, Tables 1–4 (Llama-2-70B-chat unless a row says otherwise).
Keys are task names, then run-folder system keys (``system1``, ``rar_2step``,
``distill_<entry name>``). A tuple is (accuracy %, mean generated tokens); a string is a cell
the paper reports in another shape (Table 2's biased/unbiased, Table 3's three numbers).
"""

CITATION = ("Yu, Xu, Weston, Kulikov. Distilling System 2 into System 1. arXiv:2407.06023v1 (2024), "
            "Tables 1–4, Llama-2-70B-chat")
BIBTEX = """@article{yu2024distilling,
  title   = {Distilling System 2 into System 1},
  author  = {Yu, Ping and Xu, Jing and Weston, Jason and Kulikov, Ilia},
  journal = {arXiv preprint arXiv:2407.06023},
  year    = {2024}
}"""  # for model and dataset cards

PAPER = {
    # Table 1 (RaR, exact match).
    "last_letter": {"system1": (30.0, 27.1), "distill_system1": (69.5, 24.4), "rar_1step": (39.5, 106.6),
                    "rar_2step": (44.5, 41.5), "distill_rar_2step": (98.0, 25.5)},
    "coin_flip": {"system1": (56.1, 61.9), "distill_system1": (54.5, 30.4), "rar_1step": (58.5, 158.9),
                  "rar_2step": (77.2, 112.4), "distill_rar_2step": (75.69, 50.3)},
    # Table 2 (S2A on SycophancyEval's TriviaQA prompts, mean of 3 seeds): biased / unbiased / #tokens.
    "sycophancy": {"system1": "biased 51.6%, unbiased 73.8% / 165", "s2a": "biased 76.0%, unbiased 69.3% / 147",
                   "distill_s2a": "biased 81.3%, unbiased 78.6% / 56",
                   "distill_no_usc": "biased 78.6%, unbiased 75.3% / 58 (without USC)"},
    # Table 3: human agreement % / % inconsistent / #tokens on OASST2 and on MT-bench.
    "pairwise_judge": {"system1": "OASST2 32.0 / 56.7 / 4; MT-bench 28.1 / 80.9 / 4",
                       "cot": "OASST2 45.2 / 37.7 / 432.6; MT-bench 58.9 / 30.8 / 411.8",
                       "bsm": "OASST2 49.1 / 30.4 / 2117.8; MT-bench 64.5 / 21.1 / 2063.1",
                       "distill_bsm": "OASST2 58.4 / 12.2 / 4; MT-bench 72.4 / 9.1 / 4"},
    # Table 4 at k=1; the paper's System 1 here is 8-shot without CoT.
    "gsm8k": {"system1": (7.58, 57), "cot": (52.77, 270), "cot_fewshot": (36.39, 297), "distill_cot": (7.13, 18)},
}
# Table 4 at k = 5 and 10 (majority vote; #tokens count all k samples).
PAPER_K = {"gsm8k": {"system1": {5: (9.40, 295), 10: (10.31, 620)}, "cot": {5: (57.54, 1385), 10: (59.44, 2760)},
                     "cot_fewshot": {5: (54.97, 1560), 10: (63.84, 3120)}, "distill_cot": {5: (7.13, 90), 10: (7.35, 180)}}}

# What the paper concludes per experiment (Sec. 4–5), for the reproduction report's summary.
FINDINGS = {
    "last_letter": "distils: Distilled RaR 2-step 98.0% at 25.5 tokens vs RaR 2-step 44.5% at 41.5 and System 1 30.0%",
    "coin_flip": "distils: Distilled RaR 2-step 75.7% at 50.3 tokens vs RaR 2-step 77.2% at 112.4 and System 1 56.1%",
    "sycophancy": "distils: Distilled S2A 81.3% biased / 78.6% unbiased at 56 tokens vs S2A 76.0% / 69.3% at 147",
    "pairwise_judge": "distils: Distilled BSM 72.4% MT-bench agreement, 9.1% inconsistent, 4 tokens vs BSM 64.5% / 21.1% / 2063",
    "gsm8k": "does not distil: Distilled CoT 7.1% vs CoT zero-shot 52.8% (System 1 7.6%)",
}
