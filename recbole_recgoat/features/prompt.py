"""The user-preference prompt of Table 1 (RecGOAT supplement) and the ``<answer>`` extraction.

The prompt is Table 1's text, rendered as plain text (bold as ``**...**``, the table's bullets
kept): the user id, then the user's TRAINING items, one per line as ``"<item id>": <text>`` (the
form Table 1 uses for an item), then the two reasoning steps and the output format
``<think> ... </think> <answer> ... </answer>``.  Only the ``<answer>`` part is embedded.
"""

import re

PROMPT_VERSION = 1  # bump when PROMPT changes (the prompt text is part of the cache key anyway)

PROMPT = """You are a professional data analyst. Your task is to analyze a user's interaction history to infer their preferences.

**User Information**
• User ID: {user_id}
• Interaction History:
{history}

Please conduct a structured reasoning by two steps:
1. **Identify Common Attributes Across Items**
2. **Summarize Preferences Across Multiple Dimensions**

- Extract shared characteristics from perspectives such as category, function, style, material, usage scenario, and price range. Organize the findings in a list format.
- Systematically summarize the user's preferences based on the following dimensions, with a brief explanation of supporting evidence:
• Style & Aesthetics: e.g., design style, color preference, visual element tendencies
• Function & Usability: e.g., functional needs, usage scenarios, interaction experience
• Context & Emotion: e.g., emotional value associated with items, social attributes, life scenarios
• Other Dimensions: e.g., brand loyalty, price sensitivity, attention to sustainability

**Output Format:**
<think> reasoning process here </think> <answer> answer here </answer>

Please provide your analysis below:"""

HISTORY_LINE = '  "{item_id}": {text}'
NO_TEXT = "(no description)"
_PLACEHOLDER = "answer here"
_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.IGNORECASE | re.DOTALL)


def _clean(text):
    return " ".join(str(text).split())


def history_lines(items, item_chars=0):
    """``[(item id, text)]`` -> the prompt's history block (one line per item, text on one line)."""
    lines = []
    for iid, text in items:
        text = _clean(text) or NO_TEXT
        if item_chars and len(text) > item_chars:
            text = text[: max(item_chars - 1, 1)].rstrip() + "…"
        lines.append(HISTORY_LINE.format(item_id=iid, text=text))
    return "\n".join(lines)


def build_prompt(user_id, items, item_chars=0):
    """The Table 1 prompt for ``user_id`` with ``items`` = ``[(item id, text)]`` (training items)."""
    return PROMPT.format(user_id=user_id, history=history_lines(items, item_chars))


def prompt_item_ids(prompt):
    """The item ids listed in a prompt's interaction history (for checks and tests)."""
    start = prompt.index("• Interaction History:\n") + len("• Interaction History:\n")
    end = prompt.index("\n\nPlease conduct")
    return [m.group(1) for m in re.finditer(r'^  "(.*?)": ', prompt[start:end], re.MULTILINE)]


def extract_answer(content):
    """``(answer, None)`` for a usable response, ``(None, reason)`` otherwise.

    The answer is the last non-empty ``<answer>...</answer>`` block that is not the prompt's own
    placeholder (models sometimes repeat the output format while thinking).
    """
    if not isinstance(content, str) or not content.strip():
        return None, "empty response"
    blocks = [b.strip() for b in _ANSWER.findall(content)]
    usable = [b for b in blocks if b and b.lower() != _PLACEHOLDER]
    if usable:
        return usable[-1], None
    if blocks:
        return None, "empty <answer> block" if not any(blocks) else "<answer> holds only the prompt's placeholder"
    if re.search(r"<answer>", content, re.IGNORECASE):
        return None, "unterminated <answer> (no </answer>; output cut off?)"
    return None, "no <answer>...</answer> in the response"
