"""The OpenRLHF and slime helpers against the real `reward-server serve`.

Requests go to the server's `/v1/openrlhf` and `/v1/slime` routes, shaped as
OpenRLHF (`openrlhf/utils/agent.py`) and slime
(`slime/rollout/rm_hub/__init__.py`) shape them. Run with the other client
tests: `python3 -m unittest discover -s clients/python/tests -v`.
"""

from __future__ import annotations

import asyncio
import os
import sys
import unittest
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from test_client import ServerProcess, fast_client, require_server_bin  # noqa: E402

from reward_client import openrlhf, slime  # noqa: E402
from reward_client.openrlhf import openrlhf_request  # noqa: E402
from reward_client.slime import slime_request  # noqa: E402

PROMPT = "<|im_start|>user\nWhat is 6 * 7?<|im_end|>\n<|im_start|>assistant\n"


def plain(v):
    return v.tolist() if hasattr(v, "tolist") else v


class RequestShapeTests(unittest.TestCase):
    def test_openrlhf_body(self):
        self.assertEqual(
            openrlhf_request(["q"], ["p"], ["42"]), {"query": ["q"], "prompts": ["p"], "labels": ["42"]}
        )
        with self.assertRaises(ValueError):
            openrlhf_request(["a", "b"], [], ["1"])

    def test_slime_body_from_a_sample_object(self):
        sample = SimpleNamespace(prompt=[{"role": "user", "content": "q"}], response="r", label="7", reward=None)
        self.assertEqual(
            slime_request(sample), {"prompt": [{"role": "user", "content": "q"}], "response": "r", "label": "7"}
        )


class TrainerHelpersAgainstServer(unittest.TestCase):
    server: ServerProcess

    @classmethod
    def setUpClass(cls):
        cls.server = ServerProcess(require_server_bin())

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def setUp(self):
        env = mock.patch.dict(os.environ, {"REWARD_SERVER_URL": self.server.url, "REWARD_SERVER_MAX_RETRIES": "0"})
        env.start()
        self.addCleanup(env.stop)

    def test_openrlhf_reward_func(self):
        out = openrlhf.reward_func(
            [PROMPT + "6 * 7 = \\boxed{42}<|im_end|>", PROMPT + "\\boxed{41}<|im_end|>"],
            [PROMPT, PROMPT],
            ["42", "42"],
        )
        self.assertEqual(plain(out["rewards"]), [1.0, 0.0])
        self.assertEqual(plain(out["scores"]), [1.0, 0.0])
        self.assertEqual(plain(out["extra_logs"]["correct"]), [1.0, 0.0])

    def test_openrlhf_with_an_explicit_client(self):
        out = openrlhf.reward_func(["\\boxed{2}"], [""], ["2"], client=fast_client(self.server.url))
        self.assertEqual(plain(out["rewards"]), [1.0])

    def test_slime_custom_rm_one_and_many(self):
        one = {"prompt": "q", "response": "so \\boxed{42}", "label": "42"}
        self.assertEqual(asyncio.run(slime.custom_rm(None, one)), 1.0)
        many = [one, {"prompt": "q", "response": "\\boxed{1}", "label": "42"}, {"prompt": "q", "response": "x", "label": None}]
        self.assertEqual(asyncio.run(slime.custom_rm(None, many)), [1.0, 0.0, 0.0])


if __name__ == "__main__":
    unittest.main()
