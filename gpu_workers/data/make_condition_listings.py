"""Writes condition_listings.jsonl: the project's own labelled listing descriptions (seeded, reproducible).

Every phrase below was written for Bazaar (none is copied from a marketplace or a public data set). A
listing is an item of a category, one condition sentence of its grade and some of the detail sentences a
careful seller adds. The held-out split uses condition sentences that the training split never sees, so its
accuracy measures wording the head has not learnt, not memorised phrases.
Labels: `grade` 0 (for parts) .. 5 (new, sealed); `quality` 0..1 is the share of the five kinds of detail
(specifics, accessories, provenance, reason for sale, logistics) the description gives, less a penalty for
shouting or a bare one-liner. Run: `python -m gpu_workers.data.make_condition_listings`.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

OUT = Path(__file__).with_name("condition_listings.jsonl")
SEED = 20261202
PER_GRADE = 70
HELD_OUT_PER_GRADE = 16
GRADE_NAMES = ("for_parts", "fair", "good", "very_good", "like_new", "new_sealed")

# Per grade: the first sentences are for training, the last HELD_OUT_PHRASES for the held-out split.
HELD_OUT_PHRASES = 4
CONDITION: dict[int, list[str]] = {
    5: [
        "Brand new and still sealed in the original shrink wrap.",
        "Never opened, factory seal intact.",
        "New in box, the cellophane has not been touched.",
        "Unopened retail package, bought as a gift and never used.",
        "Sealed box, still has the shop security tag on it.",
        "Brand new, unopened, exactly as it left the factory.",
        "Still in its sealed packaging, I never even took it out of the bag.",
        "Box is unopened with the manufacturer's tamper seal unbroken.",
        "Untouched: the box has never been opened.",
        "Factory sealed, a spare I bought and never needed.",
        "New and sealed, the outer wrap is still tight around the box.",
        "Unused and unopened, it has sat in the cupboard in its sealed box.",
    ],
    4: [
        "Opened once to check it, otherwise as new.",
        "Used only a couple of times, looks and works like new.",
        "Like new, no marks anywhere, kept in its box.",
        "Mint condition, used twice and stored carefully.",
        "Barely used, not a single scratch, all the protective film still on.",
        "As new, tried it for a weekend and it went back in the box.",
        "Immaculate, you would struggle to tell it from a new one.",
        "Open box but unused, every accessory still in its bag.",
        "Practically new, used for one afternoon.",
        "Flawless, only opened to take photos for this ad.",
        "Pristine, it was handled a handful of times and never left the house.",
        "Virtually unused, the surfaces still have that showroom shine.",
    ],
    3: [
        "Very good condition, a few tiny marks you only see up close.",
        "Lightly used and well looked after, works perfectly.",
        "Very clean, one faint hairline scratch on the back.",
        "Used for a few months with care, no damage, everything works.",
        "Well kept, minimal signs of use, fully working.",
        "Very good order, a small scuff on one corner but nothing else.",
        "Gently used, everything functions as it should.",
        "Excellent working order with only light cosmetic wear.",
        "Careful owner, slight wear on the edges, otherwise lovely.",
        "Clean and fully functional, a couple of barely visible marks.",
        "Looked after well, only the faintest traces of handling on it.",
        "Hardly any wear, works flawlessly, one micro scratch under strong light.",
    ],
    2: [
        "Good used condition, normal wear and tear for its age.",
        "Works fine, some scratches and scuffs from everyday use.",
        "Used regularly for two years, visible wear but no faults.",
        "Decent condition, a few dings on the casing, works well.",
        "Shows its age with marks on the surface, but it does the job.",
        "Good working order, cosmetic wear on the corners and top.",
        "Used but sound, some fading and light scratches.",
        "Everyday wear, a couple of noticeable marks, fully functional.",
        "Has been used a lot but still works without problems.",
        "Fair bit of surface wear, no functional issues at all.",
        "Clearly pre-owned with scuffs here and there, still reliable.",
        "Honest used example: scratches from daily use, everything operates normally.",
    ],
    1: [
        "Heavily used, deep scratches and a dent, still works.",
        "Worn, a cracked corner and missing a rubber foot, works most of the time.",
        "Rough cosmetically, lots of scratches and some discolouration, functional.",
        "Works but has issues: sticky buttons and a loose panel.",
        "Well worn, stains and chips, but it still powers on and runs.",
        "Tired condition, battery only lasts a short while, usable.",
        "Cosmetic damage all over and a wobbly hinge, still working.",
        "Needs some love: scratches, a small crack and a faulty switch that works if pressed hard.",
        "Plenty of wear and a couple of faults, priced to reflect that.",
        "Battered but working, one part has been glued back on.",
        "Beaten up from years of use, works but with quirks you have to live with.",
        "Well past its best, patchy finish and an intermittent fault, still usable.",
    ],
    0: [
        "Sold for parts or repair, does not power on.",
        "Not working, spares or repair only.",
        "Broken: the screen is smashed and it will not start.",
        "Faulty, sold as seen for parts, no returns.",
        "Dead on arrival when I tried it, for someone who can fix it.",
        "Water damaged and not working, useful for spare parts.",
        "Does not work, missing several parts, for salvage only.",
        "Completely broken, the motor has burnt out.",
        "For repair: it turns on but fails straight away with an error.",
        "Non-functional, cracked in two places, parts only.",
        "Cannot be used as it is, needs a new main board, strip it for components.",
        "Seized and unusable, only worth buying to harvest the good bits.",
    ],
}
# Short forms for low-effort one-liners, same split rule.
TERSE: dict[int, list[str]] = {
    5: ["sealed", "new unopened", "bnib", "new in box never opened"],
    4: ["like new", "as new", "mint", "used twice"],
    3: ["very good", "light wear", "very clean", "minor marks"],
    2: ["used", "some wear", "works ok", "good used"],
    1: ["well worn works", "rough but works", "heavy wear", "tired works"],
    0: ["broken", "for parts", "not working", "spares repair"],
}
ITEMS: dict[str, list[tuple[str, str]]] = {
    "electronics": [
        ("Bluetooth speaker", "Output is 20 W with a 12 hour battery."),
        ("Noise cancelling headphones", "Over-ear, USB-C charging, 30 hour battery."),
        ("27 inch monitor", "2560 x 1440, 75 Hz, HDMI and DisplayPort."),
        ("Smart watch", "44 mm case, heart rate and GPS."),
        ("E-reader", "6 inch glare-free screen, 8 GB, backlit."),
        ("Wireless router", "Dual band Wi-Fi 6 with four gigabit ports."),
    ],
    "phones": [
        ("Android smartphone", "128 GB storage, 8 GB RAM, unlocked to all networks."),
        ("iPhone 12", "64 GB, unlocked, battery health 86 %."),
        ("Flip phone", "Dual SIM, long battery life, unlocked."),
        ("Tablet 10 inch", "64 GB Wi-Fi model with stylus support."),
    ],
    "computers": [
        ("Laptop 14 inch", "Intel i5, 16 GB RAM, 512 GB SSD."),
        ("Gaming desktop PC", "Ryzen 5, RTX 3060, 32 GB RAM, 1 TB NVMe."),
        ("Mechanical keyboard", "Tenkeyless, brown switches, USB-C."),
        ("Graphics card", "8 GB GDDR6, three fans, two HDMI outputs."),
        ("Chromebook", "11.6 inch, 4 GB RAM, 32 GB eMMC."),
    ],
    "cameras": [
        ("Mirrorless camera body", "24 megapixels, shutter count around 8,000."),
        ("50mm f/1.8 lens", "Autofocus prime, filter thread 49 mm."),
        ("Action camera", "4K at 60 fps, waterproof to 10 m."),
        ("Instant film camera", "Takes mini film, built-in flash."),
    ],
    "furniture": [
        ("Oak dining table", "Seats six, 180 x 90 cm."),
        ("Three seater sofa", "Grey fabric, 210 cm wide, removable covers."),
        ("Office chair", "Adjustable lumbar support and armrests."),
        ("Bookcase", "Five shelves, 80 x 30 x 180 cm."),
        ("Bedside table", "Two drawers, solid pine, 45 cm tall."),
    ],
    "clothing": [
        ("Winter parka", "Size M, down filled, detachable hood."),
        ("Leather boots", "UK size 8, Goodyear welted soles."),
        ("Wool jumper", "Size L, merino, navy."),
        ("Running trainers", "UK size 9, neutral cushioning."),
        ("Denim jacket", "Size S, classic fit, mid wash."),
    ],
    "home": [
        ("Stand mixer", "1000 W motor, 5 litre bowl, three attachments."),
        ("Espresso machine", "15 bar pump, steam wand, 1.8 litre tank."),
        ("Cordless vacuum", "Up to 40 minutes runtime, wall dock."),
        ("Air fryer", "5.5 litre basket, digital controls."),
        ("Cast iron casserole", "24 cm, 4.2 litres, enamelled."),
    ],
    "toys_games": [
        ("Games console", "1 TB model with one controller."),
        ("Board game collection", "Five strategy games, all pieces counted."),
        ("LEGO Technic set", "Over 2,000 pieces with instructions."),
        ("Remote control car", "1:10 scale, brushless motor, two batteries."),
    ],
    "sports": [
        ("Road bike", "56 cm aluminium frame, 105 groupset."),
        ("Mountain bike", "Large frame, 29 inch wheels, hydraulic brakes."),
        ("Adjustable dumbbells", "Pair, 2.5 to 24 kg each."),
        ("Tennis racket", "300 g frame, grip size 2, freshly strung."),
        ("Camping tent", "Four person, two rooms, 3000 mm hydrostatic head."),
    ],
    "tools": [
        ("Cordless drill", "18 V with two 2 Ah batteries and charger."),
        ("Circular saw", "1200 W, 190 mm blade, bevel up to 45 degrees."),
        ("Socket set", "94 pieces, quarter and half inch drive."),
        ("Pressure washer", "130 bar, 1800 W, patio cleaner included."),
    ],
    "music": [
        ("Acoustic guitar", "Solid spruce top, low action."),
        ("Digital piano", "88 weighted keys with stand and pedal."),
        ("Guitar amplifier", "40 W combo, two channels, built-in reverb."),
        ("Vinyl turntable", "Belt drive, built-in preamp, two speeds."),
    ],
    "books": [
        ("Hardback cookbook", "320 pages, first edition."),
        ("Complete fantasy series box set", "Seven paperbacks in the slipcase."),
        ("University maths textbook", "Fourth edition, 900 pages."),
    ],
}
ACCESSORIES = [
    "Comes with the original box and all the paperwork.",
    "Includes the charger and the original cable.",
    "Supplied with the manual and every part it shipped with.",
    "All accessories included, nothing missing.",
    "You get the carry case and the spare parts too.",
    "Original packaging kept, plus the warranty card.",
]
PROVENANCE = [
    "Bought new in 2023, receipt available.",
    "Purchased from a high street shop two years ago.",
    "One owner from new, smoke-free and pet-free home.",
    "Bought last spring, I still have the invoice.",
    "Inherited from my uncle who bought it new.",
    "Originally a birthday present in 2021.",
]
REASONS = [
    "Selling because I have upgraded.",
    "Moving house and cannot take it with me.",
    "No longer needed since the kids moved out.",
    "Clearing space in the garage.",
    "Selling as I bought the newer model.",
    "It does not fit in the new flat.",
]
LOGISTICS = [
    "Collection from central Leeds, or I can post it tracked at cost.",
    "Happy to post, well packed, or collect from Bristol.",
    "Pick up in Manchester, cash or bank transfer.",
    "Can deliver within 10 miles of Glasgow.",
    "Posting available next working day.",
    "Collection only from north London, you are welcome to test it first.",
]
NOISE = [
    "Price is firm.",
    "No time wasters please.",
    "Offers considered.",
    "Message me with any questions.",
    "",
    "",
]


def _grade_phrases(bank: dict[int, list[str]], grade: int, split: str, held_out: int) -> list[str]:
    phrases = bank[grade]
    return phrases[-held_out:] if split == "held_out" else phrases[:-held_out]


def _description(rng: random.Random, grade: int, split: str, spec: str) -> tuple[str, float]:
    """A description and its quality label (see the module docstring)."""
    if rng.random() < 0.18:
        terse = rng.choice(_grade_phrases(TERSE, grade, split, 1))
        text = rng.choice([terse, terse.upper(), f"{terse}. collection only", f"{terse} no offers"])
        return text, 0.05 if text.isupper() else 0.1
    details = [(spec, rng.random() < 0.6), (rng.choice(ACCESSORIES), rng.random() < 0.5),
               (rng.choice(PROVENANCE), rng.random() < 0.45), (rng.choice(REASONS), rng.random() < 0.4),
               (rng.choice(LOGISTICS), rng.random() < 0.55)]
    chosen = [sentence for sentence, keep in details if keep]
    condition = rng.choice(_grade_phrases(CONDITION, grade, split, HELD_OUT_PHRASES))
    parts = [condition, *chosen]
    rng.shuffle(parts)
    noise = rng.choice(NOISE)
    if noise:
        parts.append(noise)
    quality = round(0.2 + 0.8 * len(chosen) / len(details), 3)
    return " ".join(parts), quality


def make_rows(seed: int = SEED) -> list[dict[str, object]]:
    """Every labelled listing: PER_GRADE per grade, the last HELD_OUT_PER_GRADE of each held out."""
    rng = random.Random(seed)
    catalogue = [(category, name, spec) for category, items in ITEMS.items() for name, spec in items]
    rows: list[dict[str, object]] = []
    for grade in range(len(GRADE_NAMES)):
        for n in range(PER_GRADE):
            split = "held_out" if n >= PER_GRADE - HELD_OUT_PER_GRADE else "train"
            category, name, spec = rng.choice(catalogue)
            description, quality = _description(rng, grade, split, spec)
            rows.append({
                "id": f"cl-{grade}-{n:03d}", "category": category, "title": name,
                "description": description, "grade": grade, "grade_name": GRADE_NAMES[grade],
                "quality": quality, "split": split,
            })
    return rows


def main() -> None:
    """Write the JSON lines file next to this module."""
    rows = make_rows()
    OUT.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    print(f"wrote {len(rows)} listings to {OUT}")


if __name__ == "__main__":
    main()
