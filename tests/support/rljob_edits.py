"""A change to each immutable block of tiny-reverse.yaml's spec, valid on its own (the
server refuses it only as an edit): shared by the tests of the CRD's transition rules."""

IMMUTABLE_CHANGES = {
    "model": {"dtype": "bfloat16"}, "images": {"pullPolicy": "Always"}, "cluster": {"nodes": 2},
    "trainer": {"microBatchSize": 64}, "rl": {"iterations": 7}, "prompts": {"digits": 5},
    "reward": {"type": "code"}, "weightSync": {"bucketMiB": 8}, "checkpoint": {"everyIterations": 3},
    "timeouts": {"startupSeconds": 999}, "rollout": {"maxTokens": 16},
}
