"""Everything that runs inside a hospital: model, data encoding, local training, evaluation.

The Flower ClientApp (`client.app`) wires these together; nothing here is imported at package
import time, so `lang1-fl --help` stays fast.
"""
