"""One valid job per row of the kinds table (URLs only), for the kinds and simulator tests.

A new row without an example here fails `test_every_row_has_an_example`: every row is
exercised in-process and against the simulator.
"""

from __future__ import annotations

from typing import Any

IMG = "https://example.com/cat.png"
IMG2 = "https://example.com/cat-later.png"
AUDIO = "https://example.com/voice.mp3"
CLIP = "https://example.com/clip.mp4"

EXAMPLES: dict[str, tuple[str, dict[str, Any]]] = {
    "text-to-video (wan2.7)": (
        "wan2.7-t2v",
        {"prompt": "a lighthouse at dusk", "resolution": "720P", "ratio": "16:9", "duration": 5},
    ),
    "text-to-video (wan2.6)": (
        "wan2.6-t2v",
        {"prompt": "a lighthouse", "size": "1280*720", "duration": 10, "shot_type": "multi"},
    ),
    "text-to-video (wan2.5)": (
        "wan2.5-t2v-preview",
        {"prompt": "a lighthouse", "duration": 10, "audio_url": AUDIO},
    ),
    "text-to-video (wan2.2, wanx2.1)": (
        "wan2.2-t2v-plus",
        {"prompt": "a lighthouse", "size": "1920*1080", "seed": 7},
    ),
    "image-to-video (wan2.7)": (
        "wan2.7-i2v",
        {
            "prompt": "the cat wakes up",
            "media": [{"type": "first_frame", "url": IMG}, {"type": "last_frame", "url": IMG2}],
            "resolution": "1080P",
            "duration": 5,
        },
    ),
    "image-to-video (wan2.6)": (
        "wan2.6-i2v-flash",
        {"prompt": "the cat wakes up", "img_url": IMG, "resolution": "720P", "duration": 5},
    ),
    "image-to-video (wan2.5)": (
        "wan2.5-i2v-preview",
        {"img_url": IMG, "resolution": "480P", "duration": 10},
    ),
    "image-to-video (wan2.2, wanx2.1)": (
        "wan2.2-i2v-flash",
        {"img_url": IMG, "resolution": "480P"},
    ),
    "first-and-last-frame (kf2v)": (
        "wan2.2-kf2v-flash",
        {"prompt": "dawn to dusk", "first_frame_url": IMG, "last_frame_url": IMG2},
    ),
    "reference-to-video (wan2.7)": (
        "wan2.7-r2v",
        {
            "prompt": "Video 1 waves at Image 1",
            "media": [
                {"type": "reference_video", "url": CLIP},
                {"type": "reference_image", "url": IMG, "reference_voice": AUDIO},
            ],
            "duration": 10,
        },
    ),
    "video editing (wan2.7)": (
        "wan2.7-videoedit",
        {
            "prompt": "make it claymation",
            "media": [{"type": "video", "url": CLIP}, {"type": "reference_image", "url": IMG}],
            "audio_setting": "origin",
        },
    ),
    "video (wan3.0)": (
        "wan3.0-video",
        {
            "prompt": "Image 1 sings Audio 1",
            "media": [
                {"type": "reference_image", "url": IMG},
                {"type": "reference_audio", "url": AUDIO},
            ],
            "duration": 12,
            "audio": True,
        },
    ),
    "speech-to-video (s2v)": (
        "wan2.2-s2v",
        {"image_url": IMG, "audio_url": AUDIO, "resolution": "480P"},
    ),
    "animate (move, mix)": (
        "wan2.2-animate-move",
        {"image_url": IMG, "video_url": CLIP, "mode": "wan-std"},
    ),
    "text-to-image (wan2.5)": (
        "wan2.5-t2i-preview",
        {"prompt": "a red kite", "size": "1280*1280", "n": 2},
    ),
    "text-to-image (wan2.2, wanx2.1, wanx2.0)": (
        "wan2.2-t2i-flash",
        {"prompt": "a red kite", "size": "1024*1024", "n": 4},
    ),
    "image editing (wan2.5)": (
        "wan2.5-i2i-preview",
        {"prompt": "put the cat on the sofa", "images": [IMG, IMG2], "n": 1},
    ),
    "image generation (wan2.7-image)": (
        "wan2.7-image-pro",
        {"prompt": "a flower shop", "size": "2K", "n": 2, "thinking_mode": True},
    ),
    "text-to-image (wan2.6)": (
        "wan2.6-t2i",
        {"prompt": "a flower shop", "size": "1280*1280", "n": 1},
    ),
}
