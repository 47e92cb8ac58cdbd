#!/usr/bin/env python3
"""Generates sift's sample catalog: catalog/sample/{products,inventory,prices}.jsonl.

Deterministic: a fixed seed, no clock, no environment; running it twice gives
byte-identical files (`make` and the tests rely on that). Python 3 stdlib only.

The catalog is invented (brand names are real, model names are made up) except
the Nike Pegasus 40, whose size-42 SKU NIKE-PEG40-42 the benchmark workload
asks for. Formats are documented in docs/catalog.md.

    scripts/gen-catalog.py [--out DIR]
"""
import argparse
import json
import os
import random

SEED = 20261125
WAREHOUSES = ["HAN", "DAD", "SGN"]  # Hanoi, Da Nang, Ho Chi Minh City

SHOE_SIZES = {
    "men": [str(s) for s in range(39, 47)],
    "women": [str(s) for s in range(36, 43)],
    "unisex": [str(s) for s in range(36, 47)],
}
APPAREL_SIZES = {
    "men": ["S", "M", "L", "XL", "XXL"],
    "women": ["XS", "S", "M", "L", "XL"],
    "unisex": ["XS", "S", "M", "L", "XL", "XXL"],
}

COLOURS = {
    "BLK": "black", "WHT": "white", "GRY": "grey", "NVY": "navy", "RED": "red",
    "BLU": "blue", "GRN": "green", "ORG": "orange", "PNK": "pink", "BEI": "beige",
    "OLV": "olive", "PUR": "purple", "YEL": "volt yellow", "BRN": "brown",
}

# (brand, sku prefix, [(model code, model name, kind, gender, base USD)])
# kind selects the category, the materials and the description vocabulary.
BRANDS = [
    ("Nike", "NIKE", [
        ("PEG40", "Pegasus 40", "running", "men", 130),
        ("PEG40W", "Pegasus 40", "running", "women", 130),
        ("VSTR3", "Vaporstride 3", "running", "unisex", 160),
        ("ZTEMPO", "Zoom Tempo Lite", "running", "men", 150),
        ("TRLX", "Trailcrest X", "trail", "unisex", 140),
        ("MTRN7", "Metro Trainer 7", "training", "men", 110),
        ("CRISE", "Court Rise", "basketball", "men", 125),
        ("SLIDE", "Calm Slide", "sandals", "unisex", 45),
        ("DRYTEE", "Dri Run Tee", "tshirt", "men", 35),
        ("DRYTEEW", "Dri Run Tee", "tshirt", "women", 35),
        ("FLXSH", "Flex Stride 7in Short", "shorts", "men", 40),
        ("WRJKT", "Windrunner Shell", "jacket", "unisex", 110),
        ("CLBHD", "Club Fleece Hoodie", "hoodie", "unisex", 65),
    ]),
    ("Adidas", "ADI", [
        ("BSTL5", "Boostline 5", "running", "men", 140),
        ("BSTL5W", "Boostline 5", "running", "women", 140),
        ("ADZP", "Adizip Pro", "running", "unisex", 180),
        ("TRXG", "Terrex Gripstone", "trail", "unisex", 135),
        ("DRPST", "Dropstep Trainer", "training", "women", 100),
        ("HRDN", "Hardline 2", "basketball", "men", 120),
        ("ADLT", "Adilette Aqua Flow", "sandals", "unisex", 30),
        ("OWNT", "Own the Run Tee", "tshirt", "unisex", 30),
        ("TIRO", "Tiro Track Jacket", "jacket", "men", 70),
        ("TIROW", "Tiro Track Jacket", "jacket", "women", 70),
        ("TGHT", "Optime Tight", "leggings", "women", 55),
    ]),
    ("Puma", "PUMA", [
        ("VLNT", "Velora Nitro 2", "running", "men", 120),
        ("VLNTW", "Velora Nitro 2", "running", "women", 120),
        ("DFYS", "Deviate Swift", "running", "unisex", 170),
        ("FSPR", "Fuse Sprint", "training", "men", 95),
        ("RLGM", "Rallygame", "basketball", "unisex", 115),
        ("LEAD", "Leadcat Breeze", "sandals", "unisex", 35),
        ("ESSTEE", "Essentials Logo Tee", "tshirt", "unisex", 25),
        ("RNSH", "Run Favourite Short", "shorts", "women", 35),
    ]),
    ("Asics", "ASICS", [
        ("GWKY", "Gelwave Kayo 30", "running", "men", 160),
        ("GWKYW", "Gelwave Kayo 30", "running", "women", 160),
        ("NMBS", "Novamble 26", "running", "unisex", 150),
        ("FJTR", "Fujitrek 9", "trail", "men", 130),
        ("CRT", "Court Setter FF", "training", "unisex", 105),
        ("CORE", "Core Run Tee", "tshirt", "men", 30),
        ("ACCJ", "Accelerate Jacket", "jacket", "women", 90),
    ]),
    ("New Balance", "NB", [
        ("ARC880", "Arcline 880v14", "running", "men", 140),
        ("ARC880W", "Arcline 880v14", "running", "women", 140),
        ("RBLX", "Rebel Lux v4", "running", "unisex", 130),
        ("HRZN", "Hierro Ridge", "trail", "unisex", 145),
        ("TWO", "TWO WXY Flow", "basketball", "men", 130),
        ("ACSH", "Accelerate 5in Short", "shorts", "men", 40),
        ("ATHH", "Athletics Hoodie", "hoodie", "unisex", 75),
    ]),
    ("Under Armour", "UA", [
        ("HVMC", "Hovrine Machina", "running", "men", 150),
        ("CHRG", "Charged Surge 4", "running", "women", 85),
        ("TRBN", "TriBase Reign", "training", "men", 130),
        ("CURRY", "Flow Futr", "basketball", "unisex", 120),
        ("TECH", "Tech 2.0 Tee", "tshirt", "men", 25),
        ("LNCH", "Launch 7in Short", "shorts", "unisex", 40),
        ("STRM", "Storm Run Jacket", "jacket", "men", 120),
        ("MERT", "Meridian Legging", "leggings", "women", 80),
    ]),
    ("Biti's", "BITIS", [
        ("HNTX", "Hunter X Street", "lifestyle", "unisex", 45),
        ("HNTR", "Hunter Running Core", "running", "men", 50),
        ("SDLE", "Eva Strap Sandal", "sandals", "unisex", 15),
    ]),
]

KINDS = {
    "running": (["Footwear", "Running", "Road"], "shoe",
                ["engineered mesh", "knit", "recycled mesh"]),
    "trail": (["Footwear", "Running", "Trail"], "shoe",
              ["ripstop mesh", "synthetic", "engineered mesh"]),
    "training": (["Footwear", "Training"], "shoe", ["synthetic", "knit", "mesh"]),
    "basketball": (["Footwear", "Basketball"], "shoe",
                   ["synthetic leather", "textile", "knit"]),
    "sandals": (["Footwear", "Sandals"], "shoe", ["EVA foam", "synthetic", "rubber"]),
    "lifestyle": (["Footwear", "Lifestyle"], "shoe", ["canvas", "suede", "synthetic"]),
    "tshirt": (["Apparel", "Tops", "T-Shirts"], "apparel",
               ["polyester", "recycled polyester", "cotton blend"]),
    "shorts": (["Apparel", "Bottoms", "Shorts"], "apparel", ["polyester", "nylon"]),
    "jacket": (["Apparel", "Outerwear", "Jackets"], "apparel",
               ["nylon", "polyester", "recycled polyester"]),
    "hoodie": (["Apparel", "Tops", "Hoodies"], "apparel", ["cotton fleece", "french terry"]),
    "leggings": (["Apparel", "Bottoms", "Leggings"], "apparel", ["nylon spandex", "polyester"]),
}

OPENERS = {
    "running": ["Neutral road running shoe", "Cushioned daily trainer for the road",
                "Lightweight road runner", "Responsive running shoe for tempo days"],
    "trail": ["Trail running shoe", "Rugged trail shoe for technical terrain",
              "Grippy off-road runner"],
    "training": ["Gym training shoe", "Stable cross-training shoe",
                 "Versatile trainer for lifting and HIIT"],
    "basketball": ["Basketball shoe", "Court shoe built for quick cuts",
                   "Supportive basketball shoe"],
    "sandals": ["Slide sandal", "Recovery slide", "Everyday strap sandal"],
    "lifestyle": ["Everyday sneaker", "Street-style lifestyle sneaker"],
    "tshirt": ["Short-sleeve running tee", "Breathable training t-shirt",
               "Everyday sports tee"],
    "shorts": ["Running shorts", "Lightweight training shorts"],
    "jacket": ["Lightweight running jacket", "Packable wind jacket",
               "Water-repellent training jacket"],
    "hoodie": ["Pullover hoodie", "Soft fleece hoodie"],
    "leggings": ["High-rise training leggings", "Full-length running tights"],
}

DETAILS = {
    "shoe": ["with a responsive foam midsole", "with a soft, bouncy midsole",
             "with a durable rubber outsole", "with a supportive heel counter",
             "with a wide, stable base", "with a plush collar"],
    "apparel": ["with sweat-wicking fabric", "with flatlock seams to reduce chafing",
                "with a zip pocket for keys", "with reflective details for low light",
                "with a relaxed fit", "with four-way stretch"],
}

USES = {
    "running": ["Built for daily miles and long runs.", "Made for easy runs and tempo sessions.",
                "A reliable pick for your first half marathon."],
    "trail": ["Holds on to mud, gravel and wet rock.", "Made for hilly trails and fire roads."],
    "training": ["Stable under weights, quick in drills.", "Made for gym sessions and classes."],
    "basketball": ["Made for indoor courts.", "Locks the foot in for lateral moves."],
    "sandals": ["Slip on after a run or at the beach.", "Quick-drying and easy to clean."],
    "lifestyle": ["Goes with jeans or shorts.", "Made for all-day city wear."],
    "tshirt": ["Stays light in Saigon heat.", "Made for runs, gym and everyday wear."],
    "shorts": ["Built-in brief liner.", "Made for hot-weather runs."],
    "jacket": ["Packs into its own pocket.", "Keeps off wind and light rain."],
    "hoodie": ["Kangaroo pocket and lined hood.", "Made for cool mornings."],
    "leggings": ["Hidden waistband pocket.", "Squat-proof, opaque fabric."],
}

VND_PER_USD = 25000


def money_usd(base, rng):
    # .99 or .00 endings, as shops price them
    return round(base + rng.choice([-5, 0, 0, 5, 10]) - rng.choice([0.01, 0.0]), 2)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                   "..", "catalog", "sample"))
    args = ap.parse_args()
    rng = random.Random(SEED)
    products, inventory, prices = [], [], []
    colour_codes = sorted(COLOURS)

    for brand, prefix, models in BRANDS:
        for code, name, kind, gender, base_usd in models:
            category, family, materials = KINDS[kind]
            sizes = SHOE_SIZES[gender] if family == "shoe" else APPAREL_SIZES[gender]
            n_col = 5
            if code == "PEG40":
                colourways = ["BLK", "WHT", "BLU", "ORG", "GRY"]  # the benchmark SKU is black
            else:
                colourways = rng.sample(colour_codes, n_col)
            material = rng.choice(materials)
            parent = f"{prefix}-{code}"
            usd = money_usd(base_usd, rng)
            vnd = int(round(usd * VND_PER_USD / 1000.0)) * 1000
            gender_word = {"men": "Men's", "women": "Women's", "unisex": "Unisex"}[gender]
            noun = {"shoe": "Shoe", "apparel": ""}[family]
            for ci, col in enumerate(colourways):
                colour = COLOURS[col]
                opener = rng.choice(OPENERS[kind])
                detail = rng.choice(DETAILS[family])
                use = rng.choice(USES[kind])
                article = "an" if material[0] in "aeiouAEIOU" else "a"
                desc = (f"{opener} {detail} and {article} {material} "
                        f"{'upper' if family == 'shoe' else 'build'}. {use}")
                for size in sizes:
                    # The primary colourway keeps the short SKU (NIKE-PEG40-42);
                    # the others carry a colour code.
                    sku = f"{parent}-{size}" if ci == 0 else f"{parent}-{col}-{size}"
                    title = " ".join(w for w in [brand, name, gender_word,
                                                 kind_title(kind), noun] if w)
                    title = f"{title} - {colour.title()}"
                    products.append({
                        "sku": sku,
                        "version": 1,
                        "parent_id": parent,
                        "title": title,
                        "brand": brand,
                        "category": category,
                        "attributes": {
                            "size": size,
                            "size_system": "EU" if family == "shoe" else "INT",
                            "colour": colour,
                            "material": material,
                            "gender": gender,
                        },
                        "description": desc,
                    })
                    for wh in WAREHOUSES:
                        r = rng.random()
                        qty = 0 if r < 0.18 else rng.randint(1, 12) if r < 0.8 else rng.randint(13, 60)
                        inventory.append({"sku": sku, "warehouse": wh, "quantity": qty,
                                          "version": 1})
                    prices.append({"sku": sku, "currency": "VND", "amount": vnd, "version": 1})
                    prices.append({"sku": sku, "currency": "USD", "amount": usd, "version": 1})

    # Guarantee what the benchmark workload and the docs rely on.
    skus = {p["sku"] for p in products}
    assert "NIKE-PEG40-42" in skus, "NIKE-PEG40-42 missing"
    assert len(skus) == len(products), "duplicate SKU"
    assert len(products) >= 2000, f"only {len(products)} SKUs"

    os.makedirs(args.out, exist_ok=True)
    for fname, rows in (("products.jsonl", products), ("inventory.jsonl", inventory),
                        ("prices.jsonl", prices)):
        with open(os.path.join(args.out, fname), "w", encoding="utf-8", newline="\n") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n")
    print(f"gen-catalog: {len(products)} products, {len(inventory)} stock rows, "
          f"{len(prices)} prices -> {os.path.normpath(args.out)}")


def kind_title(kind):
    return {"running": "Running", "trail": "Trail Running", "training": "Training",
            "basketball": "Basketball", "sandals": "Slide", "lifestyle": "Lifestyle",
            "tshirt": "T-Shirt", "shorts": "Shorts", "jacket": "Jacket",
            "hoodie": "Hoodie", "leggings": "Leggings"}[kind]


if __name__ == "__main__":
    main()
