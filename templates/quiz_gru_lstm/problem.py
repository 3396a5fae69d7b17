"""Quiz: parameter counts of single-layer nn.LSTM and nn.GRU (notes 04: gated recurrent networks)."""
from __future__ import annotations

import random
from pathlib import Path

from hwkit.checks import Exact
from hwkit.choices import distinct_mistakes
from hwkit.problem import Mistake, Part, Problem, say, variable_part
from solutions.quiz import rnn_params, rnn_params_formula


def sample(rng: random.Random) -> dict:
    return {"input_size": rng.randint(2, 600), "hidden_size": rng.randint(2, 600)}


def note(params: dict) -> str:
    return f"I={params['input_size']} H={params['hidden_size']}"


def answers(params: dict) -> dict:
    i, h = params["input_size"], params["hidden_size"]
    return {"q_rnn_lstm_params": rnn_params("lstm", i, h), "q_rnn_gru_params": rnn_params("gru", i, h)}


GATES = {
    "lstm": say("An LSTM has 4 weight blocks (input, forget and output gates, candidate cell).",
                "LSTM 有 4 组权重（输入门、遗忘门、输出门、候选记忆）。"),
    "gru": say("A GRU has 3 weight blocks (reset and update gates, candidate state).",
               "GRU 有 3 组权重（重置门、更新门、候选状态）。"),
}


def parts(params: dict) -> list[Part]:
    ref = answers(params)
    i, h = params["input_size"], params["hidden_size"]
    check = Exact()

    def mistakes(kind: str, name: str, other_gates: int, other: str):
        return distinct_mistakes(ref[f"q_rnn_{kind}_params"], check=check, mistakes=[
            Mistake(f"{name}_ONE_BIAS", rnn_params_formula(kind, i, h, biases=1),
                    say(f"PyTorch's {name} has two bias vectors per gate block, b_ih and b_hh.",
                        f"PyTorch 的 {name} 每组门有两个偏置向量 b_ih 和 b_hh。")),
            Mistake(f"{name}_NO_BIAS", rnn_params_formula(kind, i, h, biases=0),
                    say("Count the biases too.", "偏置也要计入。")),
            Mistake(f"{name}_GATES_OF_{other}", rnn_params_formula(kind, i, h, gates=other_gates), GATES[kind]),
            Mistake(f"{name}_NO_RECURRENT", (4 if kind == "lstm" else 3) * (h * i + 2 * h),
                    say("Each gate also reads the previous hidden state: add the H×H recurrent weights.",
                        "每个门还要读取上一时刻的隐藏状态：要加上 H×H 的循环权重。")),
        ])

    lstm_mistakes = mistakes("lstm", "LSTM", 3, "GRU")
    gru_mistakes = mistakes("gru", "GRU", 4, "LSTM")
    return [
        variable_part("q_rnn_lstm_params", 2, say("Parameters of nn.LSTM", "nn.LSTM 的参数个数"),
             answer=ref["q_rnn_lstm_params"], check=check, mistakes=lstm_mistakes),
        variable_part("q_rnn_gru_params", 2, say("Parameters of nn.GRU", "nn.GRU 的参数个数"),
             answer=ref["q_rnn_gru_params"], check=check, mistakes=gru_mistakes),
    ]


PROBLEM = Problem(
    id="quiz-gru-lstm",
    title=say("Quiz: LSTM and GRU parameter counts", "小测:LSTM 与 GRU 的参数量"),
    points=4, sample=sample, note=note, parts=parts, answers=answers,
    template=Path(__file__).with_name("notebook.j2"), topic="quiz",
)
