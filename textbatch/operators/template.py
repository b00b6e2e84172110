"""Prompt templates: `"summarize: {text}"` turns each row's text into the model input (Python `str.format` syntax).

The only field is `{text}`; write `{{` and `}}` for literal braces. A template is checked when it is made, so a typo
(`{txt}`, a lone `}`) fails on the driver with the template in the message, before any actor starts. Braces inside
the texts themselves are never interpreted.
"""

from __future__ import annotations

import string

FIELD = "text"


class PromptTemplate:
    """`PromptTemplate("summarize: {text}")("A long article.") == "summarize: A long article."`"""

    def __init__(self, template: str):
        if not isinstance(template, str):
            raise TypeError(f"a prompt template is a string, got {type(template).__name__}")
        try:
            parsed = [(field, spec, conversion) for _, field, spec, conversion in string.Formatter().parse(template)]
        except ValueError as error:
            raise ValueError(
                f"prompt template {template!r} is malformed ({error}); write {{{{ and }}}} for literal braces"
            ) from None
        fields = [(field, spec, conversion) for field, spec, conversion in parsed if field is not None]
        for field, spec, conversion in fields:
            if (field, spec, conversion) != (FIELD, "", None):
                written = "{" + field + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"
                raise ValueError(
                    f"prompt template {template!r} has the field {written}; the only field is {{{FIELD}}}, as is "
                    "(no conversion or format spec; write {{ and }} for literal braces)"
                )
        if not fields:
            raise ValueError(
                f"prompt template {template!r} has no {{{FIELD}}} field: every row would get the same prompt"
            )
        self.template = template

    def __call__(self, text: str) -> str:
        return self.template.format(text=text)

    def __repr__(self) -> str:
        return f"PromptTemplate({self.template!r})"
