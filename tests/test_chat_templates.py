"""Chat-template token counts by model family (servesim.chat_templates)."""

from servesim.chat_templates import chat_template_tokens


def test_known_families_and_an_unknown_one():
    assert chat_template_tokens("openai/gpt-oss-120b") == 67  # harmony system + developer
    assert chat_template_tokens("Qwen/Qwen3-235B-A22B-Instruct-2507") == 8  # ChatML wrappers
    assert chat_template_tokens("deepseek-ai/DeepSeek-R1-0528") == 3
    assert chat_template_tokens("DEEPSEEK-AI/DEEPSEEK-V3") == 3  # (any case)
    assert chat_template_tokens("meta-llama/Llama-3.1-8B-Instruct") is None
