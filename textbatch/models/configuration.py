"""Model configuration read from a checkpoint's config.json.

A config is a plain attribute bag: each family declares its defaults, every key of config.json becomes an attribute
(including keys this project does not use, so saving writes them back unchanged).
"""

from __future__ import annotations

import copy
import json
from typing import Any, ClassVar

# Keys every family understands, with the values Hugging Face configs default to.
COMMON_DEFAULTS: dict[str, Any] = {
    "output_attentions": False,
    "output_hidden_states": False,
    "return_dict": True,
    "is_decoder": False,
    "add_cross_attention": False,
    "is_encoder_decoder": False,
    "tie_word_embeddings": True,
    "problem_type": None,
    "architectures": None,
    "pad_token_id": None,
    "bos_token_id": None,
    "eos_token_id": None,
}


class PretrainedConfig:
    model_type: ClassVar[str] = ""
    defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, **kwargs: Any):
        values = {**COMMON_DEFAULTS, **self.defaults, **kwargs}
        num_labels = values.pop("num_labels", None)
        id2label = values.pop("id2label", None)
        values.pop("label2id", None)
        values.pop("model_type", None)
        for key, value in values.items():
            setattr(self, key, value)
        if id2label is not None:
            self.id2label = {int(k): v for k, v in id2label.items()}
        else:
            self.id2label = {i: f"LABEL_{i}" for i in range(num_labels if num_labels is not None else 2)}
        if num_labels is not None and num_labels != len(self.id2label):
            self.id2label = {i: f"LABEL_{i}" for i in range(num_labels)}

    @property
    def num_labels(self) -> int:
        return len(self.id2label)

    @num_labels.setter
    def num_labels(self, value: int) -> None:
        if value != len(self.id2label):
            self.id2label = {i: f"LABEL_{i}" for i in range(value)}

    @property
    def label2id(self) -> dict[str, int]:
        return {label: i for i, label in self.id2label.items()}

    @property
    def use_return_dict(self) -> bool:
        return bool(self.return_dict)

    @classmethod
    def from_dict(cls, values: dict[str, Any], **overrides: Any) -> PretrainedConfig:
        declared = values.get("model_type")
        if cls.model_type and declared and declared != cls.model_type:
            raise ValueError(
                f"config.json has model_type={declared!r} but {cls.__name__} reads {cls.model_type!r} checkpoints"
            )
        return cls(**{**values, **overrides})

    @classmethod
    def from_pretrained(cls, path_or_url: str, **overrides: Any) -> PretrainedConfig:
        from textbatch.storage import Folder

        return cls.from_dict(Folder.open(path_or_url).read_json("config.json"), **overrides)

    def to_dict(self) -> dict[str, Any]:
        values = copy.deepcopy({k: v for k, v in vars(self).items() if not k.startswith("_")})
        values["id2label"] = {str(k): v for k, v in self.id2label.items()}
        values["label2id"] = self.label2id
        values["model_type"] = self.model_type
        return values

    def to_json_string(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    def __repr__(self) -> str:
        return f"{type(self).__name__} {self.to_json_string()}"
