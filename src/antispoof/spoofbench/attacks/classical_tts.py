"""Classical text-to-speech attacks: espeak-ng (formant), flite (diphone / clunits), festival
(diphone, HTS, clunits). All run as external programs, offline."""
from __future__ import annotations

import functools
import re
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from antispoof.data.audio import SR
from antispoof.spoofbench.attacks.base import (ESPEAK_VOICES, SynthesisError, TextToSpeech, run_tool, wav_bytes,
                                               wav_file)

ESPEAK_VARIANTS = ("", "+m1", "+m3", "+m7", "+f1", "+f2", "+f4", "+klatt", "+croak", "+whisper")


def espeak(text: str, language: str, speed: float, rng: np.random.Generator, what: str) -> np.ndarray:
    voice = ESPEAK_VOICES[language] + ESPEAK_VARIANTS[rng.integers(len(ESPEAK_VARIANTS))]
    cmd = ["espeak-ng", "-v", voice, "-s", str(int(160 * speed)), "-p", str(int(rng.integers(30, 70))),
           "--stdout", "--stdin"]  # stdin: a text starting with a dash is not an option
    return wav_bytes(run_tool(cmd, what, stdin=text.encode()), what)


def flite(voice: str):
    def speak(text: str, language: str, speed: float, rng: np.random.Generator, what: str) -> np.ndarray:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "out.wav"
            run_tool(["flite", "-voice", voice, "--setf", f"duration_stretch={1 / speed:.3f}",
                      "-t", text, "-o", str(out)], what)
            return wav_file(out, what)
    return speak


def festival(voice: str):
    def speak(text: str, language: str, speed: float, rng: np.random.Generator, what: str) -> np.ndarray:
        # Festival's front ends stop at quotes, brackets and dashes they do not know; plain
        # letters and sentence punctuation are what every voice reads.
        text = re.sub(r"[^\w\s.,!?'-]+", " ", text).strip(" .,!?'-")
        return _festival_session(voice).speak(text, 1 / speed, what)
    return speak


class FestivalSession:
    """One festival process per voice, kept running: loading a voice (about 2 s for the Russian
    clunits one) costs far more than speaking a sentence. Commands go to its stdin in pipe mode;
    festival buffers its stdout, so each request ends by creating a marker file, which is what
    we wait for."""

    def __init__(self, voice: str):
        self.voice = voice
        self.dir = Path(tempfile.mkdtemp(prefix="antispoof-festival-"))
        self.proc = None
        self.count = 0

    def _start(self) -> None:
        self.proc = subprocess.Popen(["festival", "--pipe"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        self._send(f"(voice_{self.voice})")

    def _send(self, commands: str) -> None:
        self.proc.stdin.write(commands.encode("utf-8") + b"\n")
        self.proc.stdin.flush()

    def speak(self, text: str, stretch: float, what: str, timeout_s: float = 300.0) -> np.ndarray:
        if self.proc is None or self.proc.poll() is not None:
            self._start()
        self.count += 1
        out, mark = self.dir / f"{self.count}.wav", self.dir / f"{self.count}.done"
        self._send(f"(Parameter.set 'Duration_Stretch {stretch:.3f})\n(set! antispoof_utt nil)\n"
                   f'(set! antispoof_utt (SynthText "{text}"))\n'
                   f'(if antispoof_utt (utt.save.wave antispoof_utt "{out}" (quote riff)))\n'
                   f'(fclose (fopen "{mark}" "w"))')
        deadline = time.monotonic() + timeout_s
        while not mark.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.proc.kill()
                self.proc = None
                raise SynthesisError(f"{what}: festival stopped or hung on this text")
            time.sleep(0.005)
        mark.unlink()
        try:
            return wav_file(out, what)
        finally:
            out.unlink(missing_ok=True)


@functools.lru_cache(maxsize=None)
def _festival_session(voice: str) -> FestivalSession:
    return FestivalSession(voice)


def _classical(name: str, speak, languages, native_sr: int, cost: float, tool: str) -> TextToSpeech:
    return TextToSpeech(name, "tts", "classical", languages, native_sr, cost, tools=(tool,), speak=speak)


# Sample rates as each program writes them; costs measured on one sentence (CPU s per audio s,
# festival's first call loading its voice included).
ATTACKS = (
    _classical("tts_espeak", espeak, tuple(ESPEAK_VOICES), 22050, 0.02, "espeak-ng"),
    _classical("tts_flite", flite("rms"), ("en",), SR, 0.02, "flite"),
    _classical("tts_flite_slt", flite("slt"), ("en",), SR, 0.02, "flite"),
    _classical("tts_festival_kal", festival("kal_diphone"), ("en",), SR, 0.15, "festival"),
    _classical("tts_festival_slt_hts", festival("cmu_us_slt_arctic_hts"), ("en",), 32000, 0.4, "festival"),
    _classical("tts_festival_ru_clunits", festival("msu_ru_nsh_clunits"), ("ru",), SR, 0.8, "festival"),
    _classical("tts_festival_ca_hts", festival("upc_ca_ona_hts"), ("ca",), SR, 0.4, "festival"),
)
