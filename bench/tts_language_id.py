"""Does a TTS attack speak the language it is asked to? Whisper-base's language identification on
sentences of five languages spoken by each TTS system.

SpoofBench lets the neural TTS systems (Piper's English voice, Kokoro's Japanese one) speak every
language from that language's espeak-ng IPA. This measures what that sounds like to a multilingual
recogniser: how often the language Whisper hears is the one the text is in.

    .venv/bin/python bench/tts_language_id.py [--systems tts_piper tts_kokoro tts_espeak]

Needs models/whisper-base (`make weights`).
"""
from __future__ import annotations

import argparse
import sys

import numpy as np
import torch

# Whisper's language tokens follow <|startoftranscript|> (50258) in this order.
LANGUAGES = "en zh de es ru ko fr ja pt tr pl ca nl ar sv it id hi fi vi he uk el ms cs ro da hu ta no".split()
SENTENCES = {
    "fr": ["Un kangourou qui saute très haut.", "Bonjour, je voudrais un café s'il vous plaît."],
    "es": ["El perro corre por el parque con su pelota.", "Buenos días, ¿cómo está usted?"],
    "ru": ["Она завела прядь волос за ухо.", "Сегодня очень хорошая погода."],
    "de": ["Der Hund spielt im Garten mit dem Ball.", "Guten Morgen, wie geht es Ihnen?"],
    "en": ["Please enter your password followed by the pound key.", "The weather is nice today."],
}


def heard_language(model, extractor, wave: np.ndarray) -> str:
    features = extractor(wave, sampling_rate=16000, return_tensors="pt").input_features
    with torch.no_grad():
        logits = model(input_features=features, decoder_input_ids=torch.tensor([[50258]])).logits[0, -1]
    return LANGUAGES[int(logits[50259: 50259 + len(LANGUAGES)].argmax())]


def main(argv=None) -> int:
    from transformers import WhisperFeatureExtractor, WhisperForConditionalGeneration

    from antispoof.spoofbench.attacks import TTS_SYSTEMS

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--systems", nargs="+", default=["tts_piper", "tts_kokoro", "tts_espeak"])
    parser.add_argument("--model", default="models/whisper-base")
    args = parser.parse_args(argv)
    model = WhisperForConditionalGeneration.from_pretrained(args.model).eval()
    extractor = WhisperFeatureExtractor.from_pretrained(args.model)
    for system in args.systems:
        heard = [(lang, heard_language(model, extractor, TTS_SYSTEMS[system](text, lang, np.random.default_rng(0))))
                 for lang, texts in SENTENCES.items() for text in texts]
        foreign = [(a, b) for a, b in heard if a != "en"]
        print(f"{system}: language heard = asked in {sum(a == b for a, b in heard)}/{len(heard)} "
              f"(non-English {sum(a == b for a, b in foreign)}/{len(foreign)}); "
              + ", ".join(f"{a}->{b}" for a, b in heard))
    return 0


if __name__ == "__main__":
    sys.exit(main())
