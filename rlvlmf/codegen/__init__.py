"""Code as Reward (VLM-CaR): a chat VLM writes sub-goal checkers, verified and sandboxed."""

from rlvlmf.codegen.generate import CodegenConfig, CodegenResult, agenerate_reward_code, generate_reward_code
from rlvlmf.codegen.prompts import GeneratedProgram, extract_code, parse_program
from rlvlmf.codegen.records import CodegenRecorder, load_program, new_session_id
from rlvlmf.codegen.reward import CodeReward
from rlvlmf.codegen.sandbox import Sandbox, SandboxLimits, SandboxRejected
from rlvlmf.codegen.verify import VerificationConfig, VerificationReport, verify

__all__ = [
    "CodeReward",
    "CodegenConfig",
    "CodegenRecorder",
    "CodegenResult",
    "GeneratedProgram",
    "Sandbox",
    "SandboxLimits",
    "SandboxRejected",
    "VerificationConfig",
    "VerificationReport",
    "agenerate_reward_code",
    "extract_code",
    "generate_reward_code",
    "load_program",
    "new_session_id",
    "parse_program",
    "verify",
]
