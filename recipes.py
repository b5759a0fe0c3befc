"""
The training recipes, as data: one dict per model preset (`train.py --model NAME`) and the
laptop recipe that `python train.py --dataset prosqa-small` runs with no other flag.

Every key is also a train.py flag (`n_embd` is `--n-embd`), and a flag given on the command
line wins over the recipe. Read two recipes side by side to see what differs; the lab
notebook (EXPERIMENTS.md) has the runs that chose each value.

    python train.py --dataset prosqa-small                  # LAPTOP, every method
    python train.py --dataset prosqa --model gpt2 --device cuda   # PAPER (pretrained GPT-2)
"""

# The paper's recipe (Hao et al. 2024, section 4 and the official configs): pretrained GPT-2
# 124M, AdamW 1e-4, weight decay 0.01, effective batch 128, fp32, fixed stage lengths: 5 epochs
# a stage and the last stage until epoch 50 (6 * 5 + 20), the optimizer reset at each stage.
PAPER = dict(n_layer=12, n_head=12, n_embd=768, block_size=1024, tokenizer="gpt2", pos_emb="learned", render="text",
             lr=1e-4, weight_decay=0.01, beta2=0.999, schedule="constant", warmup=0, grad_clip=1.0, batch_size=32,
             grad_accum=4, train_frac=1.0, stage0_epochs=None, epochs_per_stage=5, final_epochs=20,
             reset_optimizer=True, markers=True, pad_latent_to_max=True, shuffle_facts=False, mix_prob=0.0,
             rename="off", until=None, patience=0, pretrain_epochs=0, pretrain_queries=8, pretrain_facts=None,
             pretrain_people=None, pretrain_options=0.0, pretrain_crowd=0, pretrain_lm=False, pretrain_until=None,
             pretrain_seed=None, until_loss=None, gate_margin=0.0, icot_delta=8.0, icot_lambda=4.0, bfs_loss=0.0)

# A small transformer from scratch on the word-level vocabulary (every ProsQA concept one
# token), with the paper's curriculum otherwise: the CPU default for the paper-size sets,
# where it stays at chance (the lab notebook); GSM8k uses it too.
SMALL = {**PAPER, "n_layer": 2, "n_head": 2, "n_embd": 64, "block_size": 512, "tokenizer": "words", "pos_emb": "rope",
         "lr": 3e-3, "beta2": 0.95, "warmup": 100, "batch_size": 8, "grad_accum": 1,
         "epochs_per_stage": 2, "final_epochs": 4}

# The laptop recipe, what crossed from scratch on 2 CPU cores (the lab notebook's "Learning
# from scratch"): a 2-layer, 128-wide model, ProsQA in the compact graph rendering (one token a
# name, Zhu et al. 2025), rotary positions, batch 128, AdamW 1e-3 kept across stages; first a
# lookup pretraining (half its queries about a person) that ends once the lookup has formed,
# the counterpart of starting from a GPT-2 that can already look things up, made once with its
# own seed and shared by every --seed as GPT-2 is (the pretraining's seed decides how fast the
# written steps form); then the curriculum without <bot>/<eot>, 10% of examples at a random
# stage, and in the last stage each question under fresh names every epoch and the learning
# rate decaying to 10% over its 48 epochs (`schedule` last). Stage 0 ends on its metric, once its
# training loss falls to `until_loss` (the validation metrics did not tell a ready stage 0 from
# one whose thoughts fail; 40 epochs at most); the middle thought stages train their 20 epochs
# (`patience` 0: a plateau of 2 epochs on 300 validation questions ended them while they were
# still learning, and the last stage paid for it; 20 epochs each start the last stage 11 points
# higher than 10 did; the lab notebook has the runs). iCoT (one stage, as many epochs as these
# stages at their caps) removes a chain token every 20 epochs, the curriculum's pace of a step a
# stage (a step is one name here; Deng et al.'s 8 tokens an epoch took the whole chain in one).
LAPTOP = {**SMALL, "n_head": 4, "n_embd": 128, "render": "graph", "lr": 1e-3, "batch_size": 128,
          "reset_optimizer": False, "markers": False, "shuffle_facts": True, "mix_prob": 0.1, "rename": "last",
          "schedule": "last", "pretrain_epochs": 30, "pretrain_people": 0.5, "pretrain_until": 0.95, "pretrain_seed": 0,
          "until": None, "until_loss": 0.19, "patience": 0, "stage0_epochs": 40, "epochs_per_stage": 20,
          "final_epochs": 48, "icot_delta": 0.05}

# Zhu et al. 2025 ("Reasoning by Superposition", args/prosqa_coconut_2l_8h_768d.yaml): their
# model size from scratch (2 layers, width 768, 8 heads) with the laptop recipe's pretraining,
# rendering and gates; a GPU preset.
ZHU = {**LAPTOP, "n_head": 8, "n_embd": 768, "lr": 1e-4, "weight_decay": 0.01}

PRESETS = {"small": SMALL, "gpt2": PAPER, "gpt2-scratch": {**PAPER, "tokenizer": "words"}, "zhu": ZHU}

# ProntoQA (5 steps, 6 stages) changes three things (the lab notebook's "Shorter contexts form
# ProntoQA's lookup"): half the pretraining's queries ask a concept's property the way the
# question asks it, each pretraining sequence states between 5 and all of its facts (with all of
# them the concept lookup never formed), and stage 0 ends on its path gate (97% of its written steps
# on validation right, the last one's polarity included), not on its loss: the loss gate passes
# a stage 0 whose last step is a coin flip. Its middle thought stages each cross late (stage 1 at
# 70% for 10 epochs, 99% at its 28th): they end after 3 epochs without a new best once they reach
# the stage before's best (`patience` 3), at most 40 epochs; at a fixed 20, stage 1 handed on at 85%
# and stage 2 never crossed ("ProntoQA's thought stages, gated").
PRONTOQA = {**LAPTOP, "max_stage": 6, "pretrain_options": 0.5, "pretrain_facts": 5, "until_loss": None,
            "until": 0.97, "patience": 3, "epochs_per_stage": 40}

# The laptop-scale generated sets run the laptop recipe on the small model (`--model small`,
# the default); its curriculum is as deep as their questions.
DATASETS = {"prosqa-small": {**LAPTOP, "max_stage": 3}, "prosqa-tiny": {**LAPTOP, "max_stage": 2},
            "prontoqa": PRONTOQA}


# The settings a recipe holds that have no flag of their own: `train.py --set KEY=VALUE`
# changes one. (type or choices, what it does)
SETTINGS = {
    "block_size": (int, "the model's context in tokens"),
    "tokenizer": (("words", "gpt2"), "the word-level vocabulary (from scratch) or GPT-2's BPE"),
    "pos_emb": (("learned", "rope"), "positions: learned absolute (GPT-2's) or rotary (relative; from scratch only)"),
    "weight_decay": (float, "AdamW weight decay on matrices"),
    "beta2": (float, "AdamW's second-moment decay (the paper: PyTorch's default 0.999)"),
    "warmup": (int, "optimizer steps of linear learning-rate warm-up at the start of each stage"),
    "schedule": (("constant", "cosine", "last"), "learning rate within a stage: constant, cosine decay to 10% in "
                                                 "every stage, or in the curriculum's last stage only (last)"),
    "grad_clip": (float, "clip the gradient norm (0: off)"),
    "train_frac": (float, "the share of the training split one epoch uses (a fresh random subset each epoch)"),
    "pad_latent_to_max": (bool, "every example gets the stage's full thought count (the paper's ProsQA setting); "
                                "false caps it at the example's number of steps (GSM8k)"),
    "shuffle_facts": (bool, "ProsQA: every epoch, state each question's facts in a new order and redraw the two "
                            "candidates' order (Zhu et al.)"),
    "pretrain_queries": (int, "lookup queries per graph in the pretraining"),
    "pretrain_facts": (int, "a pretraining sequence states between this many and all of its graph's facts "
                            "(shorter contexts; none: all)"),
    "pretrain_people": (float, "this share of the pretraining's queries asks about a person (none: every name "
                               "with a child alike)"),
    "pretrain_options": (float, "this share of the pretraining's queries first offers two names, the child asked "
                                "for and a name that is not one (`[Q] c d [R] x c`, the form of a question's last step)"),
    "pretrain_crowd": (int, "this many more people join each pretraining graph, each a name of the split's "
                            "people with two of the graph's concepts (ProntoQA has one person a graph, found by its "
                            "kind of name alone; among several the lookup must match the name)"),
    "pretrain_lm": (bool, "the pretraining's loss also covers every token of the facts"),
    "pretrain_until": (float, "the pretraining ends after the first epoch whose lookup metric (a child of the "
                              "person asked about, on validation) reaches this fraction (none: its epoch count)"),
    "pretrain_seed": (int, "the pretraining's seed (its model's start and data): runs of every --seed then share "
                           "one pretraining, as the paper's runs share GPT-2 (none: the run's --seed)"),
    "until_loss": (float, "stage 0 ends once its training loss is at most this (none: no such gate; --until is "
                          "the other gate)"),
    "gate_margin": (float, "a gated middle stage (--patience) counts as formed once its best validation accuracy is "
                           "within this of the stage before's best (0: at least that best, a maximum over a few hundred "
                           "questions)"),
    "bfs_loss": (float, "beyond the paper: the BFS loss of Zhu et al. 2025 at this weight (0: off), its k-th thought "
                        "read through the LM head rewarded for the names reachable within k steps of the person "
                        "(Coconut on graph questions, c_thought 1)"),
    "icot_delta": (float, "--method icot: written-chain tokens removed per epoch (Deng et al.: 8)"),
    "icot_lambda": (float, "--method icot: removal smoothing, o more tokens with probability ~ exp(-lambda o) "
                           "(theirs: 4; inf: off)"),
}


def setting(key, text):
    """The value of `--set key=text`, by the setting's type; ValueError naming it otherwise."""
    if key not in SETTINGS:
        raise ValueError(f"--set {key}={text}: no such setting; --set takes {', '.join(sorted(SETTINGS))}")
    kind = SETTINGS[key][0]
    if text.lower() == "none" and key in ("pretrain_facts", "pretrain_people", "pretrain_until", "pretrain_seed",
                                          "until_loss"):
        return None
    if kind is bool:
        if text.lower() not in ("true", "false"):
            raise ValueError(f"--set {key}={text}: expected true or false")
        return text.lower() == "true"
    if isinstance(kind, tuple):
        if text not in kind:
            raise ValueError(f"--set {key}={text}: expected one of {', '.join(kind)}")
        return text
    try:
        return kind(text)
    except ValueError:
        raise ValueError(f"--set {key}={text}: expected {'an integer' if kind is int else 'a number'}") from None


def recipe(model, dataset):
    """The settings of a run before its flags: the preset, with the dataset's recipe over the
    small one."""
    return {"max_stage": 6, **PRESETS[model], **(DATASETS.get(dataset, {}) if model == "small" else {})}


# ----------------------------------------------------------------------------- what a setting means in a stage
# (args: a run's argparse.Namespace, or the dict a checkpoint stores)

# What a checkpoint older than a setting meant by leaving it out: the value runs had before it.
BEFORE_FLAG = {"render": "text", "markers": True, "pretrain_options": 0.0, "pretrain_crowd": 0, "bfs_loss": 0.0}


def stage_schedule(args, stage):
    """The learning rate's shape in this stage: schedule cosine decays every stage and the
    pretraining, schedule last only the curriculum's last (the one final_epochs sizes; a gated
    stage or the pretraining has no known length to decay over)."""
    a = args if isinstance(args, dict) else vars(args)
    if a.get("schedule", "constant") == "last":
        return "cosine" if stage >= a["max_stage"] and stage == a.get("last", stage) else "constant"
    return a.get("schedule", "constant")


def renames(args, stage):
    """Whether --rename gives this stage's questions fresh names: in every stage and the
    pretraining ("all"), or in the curriculum's last stage ("last")."""
    a = args if isinstance(args, dict) else vars(args)
    return a.get("rename", "off") == "all" or (a.get("rename") == "last" and stage >= a["max_stage"])
