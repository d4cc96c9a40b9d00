-- Full text beyond English (issue 27). Both backends call kb_text_search (and
-- kb_hybrid_search through it), so both gain this. Idempotent.
--
-- The English ranking (20261123000500_ranking.sql) stems English words only: it
-- misses other languages' word forms ("impermanente", "liquidité"), accents and
-- typos ("vualt", "liquidty"). Beside it, every chunk now also gets:
--   * tsv_simple: the 'simple' configuration (no stemming, no stop words) over
--     the lower-cased, accent-folded (unaccent) title, section and text, with a
--     GIN index; the title's words split at any punctuation ("Debug.log" is
--     "debug" and "log");
--   * its words in kb_words (kb, word, chunks holding it), kept by statement
--     triggers on kb_chunks, with a pg_trgm GIN index: the vocabulary a
--     question's unknown words are matched against, and each word's document
--     frequency, so no search counts anything with a scan.
-- kb_simple_terms takes each folded word of a question as it is when the kb
-- has it, else as the kb's words most like it (letters swapped, a word that
-- begins or ends it, trigram similarity: typos, other languages' forms,
-- compounds), weighted by inverse document frequency and likeness;
-- kb_simple_rank ranks tsv_simple by those. kb_text_search runs the English
-- ranking (kb_english_search, the old kb_text_search) on the question with
-- those corrections and "what is X" in six languages asked in English, and
-- fuses both lists by reciprocal rank, the English best chunk kept first.

create extension if not exists unaccent;
create extension if not exists pg_trgm;

-- Lower-cased and accent-folded ("Liquidité" -> "liquidite"). unaccent() is
-- stable (it reads its dictionary through search_path); pinned to the
-- extension's dictionary it is immutable, as a generated column needs. The
-- search_path names Supabase's `extensions` schema as well, where the
-- dashboard installs extensions.
create or replace function public.kb_fold(value text)
returns text
language sql immutable parallel safe strict
set search_path = public, extensions, pg_catalog
as $$
    select unaccent('unaccent'::regdictionary, lower(value))
$$;

alter table public.kb_chunks add column if not exists tsv_simple tsvector generated always as (
    setweight(to_tsvector('simple'::regconfig, public.kb_fold(
        regexp_replace(coalesce(metadata ->> 'title', ''), '[^[:alnum:]]+', ' ', 'g'))), 'A')
    || setweight(to_tsvector('simple'::regconfig, public.kb_fold(coalesce(metadata ->> 'section', ''))), 'B')
    || to_tsvector('simple'::regconfig, public.kb_fold(content))
) stored;
create index if not exists kb_chunks_tsv_simple_idx on public.kb_chunks using gin (tsv_simple);


-- The vocabulary of each kb: every word of tsv_simple and how many chunks hold it.
-- A word's letters in order: the same key for "vault" and "vualt".
create or replace function public.kb_letters(word text)
returns text
language sql immutable parallel safe strict
as $$
    select string_agg(c, '' order by c) from regexp_split_to_table(word, '') as c
$$;

-- How many letters two words begin with alike.
create or replace function public.kb_common_prefix(a text, b text)
returns int
language sql immutable parallel safe strict
as $$
    select coalesce(max(i), 0) from generate_series(1, least(length(a), length(b))) as i
    where left(a, i) = left(b, i)
$$;

create table if not exists public.kb_words (
    kb text not null,
    word text not null,
    chunks integer not null,
    letters text generated always as (public.kb_letters(word)) stored,
    primary key (kb, word)
) with (autovacuum_analyze_scale_factor = 0.02);
create index if not exists kb_words_letters_idx on public.kb_words (kb, letters);
alter table public.kb_words enable row level security;
do $$
declare
    ops text;
begin
    -- gin_trgm_ops lives wherever pg_trgm was installed (public here, often
    -- `extensions` on Supabase). Over lower(word) (the words are lower case
    -- already), so that the planner looks a word up by the primary key, not by
    -- this index; no pending list, so that a lookup never scans one.
    select quote_ident(n.nspname) || '.gin_trgm_ops' into ops
    from pg_extension e join pg_namespace n on n.oid = e.extnamespace
    where e.extname = 'pg_trgm';
    execute format('create index if not exists kb_words_trgm_idx on public.kb_words using gin (lower(word) %s) with (fastupdate = off)', ops);
end
$$;

-- Words worth a vocabulary entry: three to forty letters or digits, not a number
-- (not the hyphenated compounds the parser also emits, "liquidity-tokens").
create or replace function public.kb_vocabulary_word(word text)
returns boolean
language sql immutable parallel safe
as $$
    select length(word) between 3 and 40 and word ~ '^[[:alnum:]]+$' and word !~ '^[0-9]+$'
$$;

create or replace function public.kb_words_count()
returns trigger
language plpgsql
as $$
begin
    if tg_op in ('DELETE', 'UPDATE') then
        with gone as (
            select o.kb, l.word, count(*) as n
            from old_rows o, unnest(tsvector_to_array(o.tsv_simple)) as l(word)
            where public.kb_vocabulary_word(l.word)
            group by o.kb, l.word
        )
        update public.kb_words w set chunks = w.chunks - g.n
        from gone g where w.kb = g.kb and w.word = g.word;
        delete from public.kb_words w where w.chunks <= 0;
    end if;
    if tg_op in ('INSERT', 'UPDATE') then
        insert into public.kb_words as w (kb, word, chunks)
        select a.kb, l.word, count(*)
        from new_rows a, unnest(tsvector_to_array(a.tsv_simple)) as l(word)
        where public.kb_vocabulary_word(l.word)
        group by a.kb, l.word
        order by 1, 2  -- one lock order for concurrent ingests
        on conflict (kb, word) do update set chunks = w.chunks + excluded.chunks;
    end if;
    return null;
end
$$;

drop trigger if exists kb_chunks_words_inserted on public.kb_chunks;
drop trigger if exists kb_chunks_words_deleted on public.kb_chunks;
drop trigger if exists kb_chunks_words_updated on public.kb_chunks;
create trigger kb_chunks_words_inserted after insert on public.kb_chunks
    referencing new table as new_rows
    for each statement execute function public.kb_words_count();
create trigger kb_chunks_words_deleted after delete on public.kb_chunks
    referencing old table as old_rows
    for each statement execute function public.kb_words_count();
create trigger kb_chunks_words_updated after update on public.kb_chunks
    referencing old table as old_rows new table as new_rows
    for each statement execute function public.kb_words_count();

-- the chunks that were there before this migration
delete from public.kb_words;
insert into public.kb_words (kb, word, chunks)
select c.kb, l.word, count(*)
from public.kb_chunks c, unnest(tsvector_to_array(c.tsv_simple)) as l(word)
where public.kb_vocabulary_word(l.word)
group by c.kb, l.word;
analyze public.kb_words;


-- The English ranking of 20261123000500_ranking.sql under its own name (the
-- body unchanged but for the name it qualifies its parameters with).
create or replace function public.kb_english_search(query text, kb text, k int default 5)
returns table (id bigint, content text, metadata jsonb, score double precision)
language plpgsql stable
as $$
declare
    n double precision;
    terms tsquery[];
    weights double precision[];
    lexemes text[];
    freqs double precision[];
    selective tsquery;
    definition text := public.kb_definition_pattern(query);
    normal text := public.kb_normalise_query(query);
    asks_when boolean := query ~* '^\s*when\M|\mwhat\s+(year|date|day)\M|\msince\s+when\M';
    dated text;
    phrase text := substring(lower(query) from
        '^\s*(?:what(?:''s|s|\s+is|\s+are)|define|explain)\s+(?:an?\s+|the\s+)?([[:alnum:]]+(?:\s+[[:alnum:]]+){1,3}?)s?[\s?.!]*$');
begin
    if to_tsvector('english'::regconfig, normal) = ''::tsvector then
        return;
    end if;
    select coalesce(sum(d.chunks), 0) into n from public.kb_documents d where d.kb = kb_english_search.kb;
    select array_agg(('''' || replace(replace(l.lexeme, '\', '\\'), '''', '''''') || '''')::tsquery),
           array_agg(ln((n + 1) / (coalesce(l.freq * n, 1) + 0.5))),
           array_agg(l.lexeme),
           array_agg(l.freq)
    into terms, weights, lexemes, freqs
    from public.kb_query_lexemes(normal) l;  -- pg_stats read once per query
    -- kb_selective_words(normal, kb) on those lexemes (it would read pg_stats
    -- again): the rarest while their estimated matches stay within 1000 chunks
    select string_agg('''' || replace(replace(r.lexeme, '\', '\\'), '''', '''''') || '''', ' | '
                      order by r.freq, r.lexeme)::tsquery
    into selective
    from (select x.lexeme, coalesce(x.freq, 0) as freq,
                 sum(coalesce(x.freq, 0) * n) over (order by coalesce(x.freq, 0), x.lexeme) as expected
          from unnest(lexemes, freqs) as x(lexeme, freq)) r
    where r.expected <= 1000;
    if phrase is not null then
        phrase := '\m' || regexp_replace(phrase, '\s+', '[\s-]+', 'g') || 's?\M';
    end if;
    if asks_when then
        select '\m(' || string_agg(regexp_replace(x.lexeme, '\W', '', 'g'), '|')
               || ')\w*[^.!?\n]{0,80}\m(19|20)\d\d\M'
        into dated
        from unnest(lexemes, freqs) as x(lexeme, freq)
        where coalesce(x.freq, 0) < 0.05 and x.lexeme ~ '^\w{3,}$';
    end if;
    return query execute $sql$
        with candidates as (
            select c.id, c.content, c.metadata, c.tsv,
                   (select coalesce(sum(t.w), 0) from unnest($6, $7) as t(q, w)
                    where c.tsv @@ t.q) as idf,
                   tsvector_to_array(ts_filter(c.tsv, '{a}')) as title
            from public.kb_chunks c
            where c.kb = $1 and (c.tsv @@ $2 or c.tsv @@ $3)
            limit 5000
        ),
        scored as (
            select c.id, c.content, c.metadata,
                   ts_rank('{0.2, 0.3, 0.5, 1.0}', c.tsv, $4, 1) * c.idf * c.idf
                   * (1 + coalesce((select count(*) from unnest(c.title) l where l = any($8))::double precision
                                   / nullif(cardinality(c.title), 0), 0))
                   * case when (c.metadata ->> 'chunk') = '0'
                          then case when $9 is null then 1.6 else 2.0 end else 1 end
                   * case when $9 is null or c.content !~* $9 then 1
                          when left(c.content, 200) ~* $9 then 30.0 else 10.0 end
                   * case when not $10 or c.content !~* '\m(19|20)\d\d\M' then 1
                          when $11 is not null and c.content ~* $11 then 9.0 else 3.0 end
                   * case when $12 is not null and c.content ~* $12 then 3.0 else 1 end as score
            from candidates c
        )
        select s.id, s.content, s.metadata, s.score::double precision
        from scored s
        order by s.score desc, s.id
        limit $5
    $sql$
    using kb, selective, plainto_tsquery('english'::regconfig, normal),
          public.kb_any_words(normal), k, terms, weights, lexemes, definition,
          asks_when, dated, phrase;
end
$$;


-- Each folded word of a question with what it is looked up as in `kb`: itself
-- when the kb has it, and, when the kb has it in at most two chunks (a word the
-- kb does not use, or a typo in it), the kb's words most like it (likeness
-- 0..1, at least 0.6, within 0.05 of the best), found through indexes:
--   * the same letters in another order, the first one the same ("vualt" ->
--     "vault"): kb_words.letters;
--   * a kb word that begins or ends the word ("impermanenter" -> "impermanent",
--     "liquiditeitstokens" -> "tokens"): 0.5 + half the share of its letters;
--   * trigram similarity of at least 0.4 ("liqudity" -> "liquidity"),
--     raised by the share of a common beginning ("liquidite" -> "liquidity").
-- `weight` is the term's inverse document frequency times its likeness.
-- (Out column names are qualified everywhere below: they are plpgsql variables.)
create or replace function public.kb_simple_terms(query text, kb text)
returns table (word text, term text, weight double precision, likeness double precision, chunks int)
language plpgsql stable
set search_path = public, extensions, pg_catalog
set pg_trgm.similarity_threshold = 0.4
as $$
declare
    n double precision;
begin
    select coalesce(sum(d.chunks), 0) into n from public.kb_documents d where d.kb = kb_simple_terms.kb;
    if n = 0 then
        return;
    end if;
    return query
        with words as (
            select distinct l.word, coalesce(v.chunks, 0) as chunks
            from unnest(tsvector_to_array(to_tsvector('simple'::regconfig, public.kb_fold(query)))) as l(word)
            left join public.kb_words v on v.kb = kb_simple_terms.kb and v.word = l.word
            where public.kb_vocabulary_word(l.word)
        ),
        unknown as (
            select w.word from words w where w.chunks <= 2 and length(w.word) >= 4
        ),
        found (word, term, chunks, likeness) as (
            select u.word, v.word as term, v.chunks, 0.9::double precision as likeness
            from unknown u join public.kb_words v
                 on v.kb = kb_simple_terms.kb and v.letters = public.kb_letters(u.word) and v.word <> u.word
                    and left(v.word, 1) = left(u.word, 1)
            union all
            select u.word, v.word, v.chunks,
                   0.5 + 0.5 * length(v.word)::double precision / length(u.word)
            from unknown u
            cross join lateral generate_series(5, length(u.word) - 1) as i
            join public.kb_words v
                 on v.kb = kb_simple_terms.kb and v.word in (left(u.word, i), right(u.word, i))
            union all
            select u.word, s.term, s.chunks,
                   greatest(similarity(s.term, u.word),
                            case when left(s.term, 5) = left(u.word, 5)
                                 then public.kb_common_prefix(s.term, u.word)::double precision
                                      / greatest(length(s.term), length(u.word)) else 0 end)::double precision
            from unknown u
            cross join lateral (
                select v.word as term, v.chunks
                from public.kb_words v
                where v.kb = kb_simple_terms.kb and lower(v.word) % u.word and v.word <> u.word
                order by similarity(v.word, u.word) desc
                limit 5
            ) s
        ),
        ranked as (
            select f.word, f.term, f.chunks, max(f.likeness) as likeness
            from found f where f.likeness >= 0.6
            group by f.word, f.term, f.chunks
        ),
        alike as (
            select r.word, r.term, r.chunks, r.likeness
            from (select r.*, max(r.likeness) over (partition by r.word) as best,
                         row_number() over (partition by r.word order by r.likeness desc, r.chunks desc) as nth
                  from ranked r) r
            where r.likeness >= r.best - 0.05 and r.nth <= 3
        )
        select t.word, t.term, ln((n + 1) / (t.chunks + 0.5)) * t.likeness, t.likeness, t.chunks
        from (select w.word, w.word as term, w.chunks, 1.0::double precision as likeness
              from words w where w.chunks > 0
              union all
              select * from alike) t;
end
$$;


-- Language-neutral ranking of the chunks of `kb` for the terms of
-- kb_simple_terms (`words[i]` looked up as `terms[i]`, weighing `weights[i]`).
-- Candidates: chunks with one of the terms rarest in the kb, rarest first while
-- the chunks that hold them stay within a budget (as kb_selective_words does;
-- a tenth of the kb at most, since 'simple' keeps every everyday word), or with
-- a term of every word. Score: per word the best weight of its terms
-- that the chunk holds, summed and squared, times ts_rank (title > section >
-- text, length-normalised) and title coverage, like the English ranking; at
-- most two chunks of a page, so that more pages take part.
create or replace function public.kb_simple_rank(kb text, words text[], terms text[], weights double precision[], k int)
returns table (id bigint, content text, metadata jsonb, score double precision)
language plpgsql stable
as $$
declare
    queries tsquery[];
    any_term tsquery;
    selective tsquery;
    every_word tsquery;
    n double precision;
begin
    if coalesce(cardinality(terms), 0) = 0 then
        return;
    end if;
    select array_agg(quote_literal(t)::tsquery order by o), string_agg(quote_literal(t), ' | ')::tsquery
    into queries, any_term
    from unnest(terms) with ordinality as x(t, o);
    select coalesce(sum(d.chunks), 0) into n from public.kb_documents d where d.kb = kb_simple_rank.kb;
    select string_agg(quote_literal(r.word), ' | ')::tsquery into selective
    from (select v.word, sum(v.chunks) over (order by v.chunks, v.word) as expected
          from public.kb_words v
          where v.kb = kb_simple_rank.kb and v.word = any(terms)) r
    where r.expected <= least(1000, greatest(50, n / 10));
    select string_agg('(' || g.alternatives || ')', ' & ')::tsquery into every_word
    from (select string_agg(quote_literal(x.term), ' | ') as alternatives
          from unnest(words, terms) as x(word, term) group by x.word) g;
    return query
        with candidates as (
            select c.id, c.content, c.metadata, c.tsv_simple
            from public.kb_chunks c
            where c.kb = kb_simple_rank.kb
              and (c.tsv_simple @@ coalesce(selective, every_word) or c.tsv_simple @@ every_word)
            limit 300
        ),
        scored as materialized (  -- else `idf * idf` below runs its subquery twice
            select c.id, c.content, c.metadata,
                   (select sum(b.best) from (
                        select max(t.w) as best
                        from unnest(words, queries, weights) as t(word, q, w)
                        where c.tsv_simple @@ t.q
                        group by t.word) b) as idf,
                   ts_rank('{0.2, 0.3, 0.5, 1.0}', c.tsv_simple, any_term, 1) as rank,
                   tsvector_to_array(ts_filter(c.tsv_simple, '{a}')) as title
            from candidates c
        ),
        ranked as (
            select s.id, s.content, s.metadata,
                   (s.rank * s.idf * s.idf
                    * (1 + coalesce((select count(*) from unnest(s.title) l where l = any(terms))::double precision
                                    / nullif(cardinality(s.title), 0), 0)))::double precision as score
            from scored s
        ),
        per_page as (
            select r.*, row_number() over (partition by r.metadata ->> 'source' order by r.score desc, r.id) as nth
            from ranked r
        )
        select p.id, p.content, p.metadata, p.score
        from per_page p
        where p.nth <= 2
        order by p.score desc, p.id
        limit k;
end
$$;

-- Language-neutral search on its own (kb_text_search fuses it with the English one).
create or replace function public.kb_simple_search(query text, kb text, k int default 5)
returns table (id bigint, content text, metadata jsonb, score double precision)
language sql stable
as $$
    select r.* from (
        select array_agg(t.word) as words, array_agg(t.term) as terms, array_agg(t.weight) as weights
        from public.kb_simple_terms(query, kb) t
    ) a, public.kb_simple_rank(kb, a.words, a.terms, a.weights, k) r
$$;


-- "What is X?" asked in German, French, Spanish, Portuguese, Italian or Dutch,
-- asked in English (on folded text: "o que e o defichain?" -> "what is
-- defichain?"), so that the English ranking's definitions (a sentence "X is
-- a ...") answer it too; other text unchanged.
create or replace function public.kb_what_is(folded text)
returns text
language sql immutable parallel safe
as $$
    select regexp_replace(regexp_replace(folded,
        '^[\s¿¡?!]*(que es|o que e|was ist|qu''est-ce que c''est que|qu''est[- ]ce que|c''est quoi|'
        || 'che cos''e|che cosa e|cos''e|cosa e|wat is|wat betekent)\M\s*'
        || '((el|la|lo|le|les|l''|il|un|una|une|uno|o|a|um|uma|der|die|das|ein|eine|de|het|een)\M\s*)?',
        'what is '),
        '^[\s¿¡?!]*(que son|o que sao|was sind|que sont|cosa sono|che cosa sono|wat zijn)\M\s*'
        || '((los|las|les|os|as|die|i|gli|le|de)\M\s*)?',
        'what are ')
$$;


-- Full-text search within one knowledge base: the English ranking and the
-- language-neutral one, fused by reciprocal rank (1 / (60 + rank) each; the
-- English rank breaks ties), but for the English ranking's best chunk, which
-- stays first: its definition, title and page-opening boosts are the
-- strongest signal a full-text search has, and rank fusion alone would trade
-- them for agreement between the lists. The English ranking looks up the question with
-- each word the kb does not use (or uses at most twice: a typo in the kb)
-- replaced by the kb's word most like it and most used (likeness x ln(2 +
-- chunks)), folded ("how do i creat a vualt" -> "how do i create a vault"), so
-- typos also find English word forms ("vault" -> "vaults"); "what is X" in
-- another language is asked as "what is X" (kb_what_is).
create or replace function public.kb_text_search(query text, kb text, k int default 5)
returns table (id bigint, content text, metadata jsonb, score double precision)
language plpgsql stable
as $$
declare
    words text[];
    terms text[];
    weights double precision[];
    usual double precision[];
    corrected text := public.kb_what_is(public.kb_fold(query));
    fix record;
    lists int := greatest(k, 10);
begin
    select array_agg(t.word), array_agg(t.term), array_agg(t.weight), array_agg(t.likeness * ln(2 + t.chunks))
    into words, terms, weights, usual
    from public.kb_simple_terms(query, kb) t;
    for fix in
        select distinct on (t.word) t.word, t.term
        from unnest(words, terms, usual) as t(word, term, usual)
        order by t.word, t.usual desc
    loop
        if fix.term <> fix.word then
            corrected := regexp_replace(corrected, '\m' || fix.word || '\M', fix.term, 'g');
        end if;
    end loop;
    return query
        with english as (
            select e.id, e.content, e.metadata, row_number() over (order by e.score desc, e.id) as rank
            from public.kb_english_search(corrected, kb, lists) e
        ),
        neutral as (
            select s.id, s.content, s.metadata, row_number() over (order by s.score desc, s.id) as rank
            from public.kb_simple_rank(kb, words, terms, weights, lists) s
        ),
        fused as (
            select coalesce(e.id, s.id) as id, coalesce(e.content, s.content) as content,
                   coalesce(e.metadata, s.metadata) as metadata,
                   case when e.rank = 1 then 1.0  -- the English ranking's best stays first
                        else coalesce(1.0 / (60 + e.rank), 0) + coalesce(1.0 / (60 + s.rank), 0) end as score,
                   e.rank as english_rank
            from english e full outer join neutral s on s.id = e.id
        )
        select f.id, f.content, f.metadata, f.score::double precision
        from fused f
        order by f.score desc, f.english_rank nulls last, f.id
        limit k;
end
$$;

-- after an ingest, fresh statistics for the vocabulary too (the typo lookups plan on them)
create or replace function public.jelly_kb_ingest_finished(p_kb text)
returns void
language plpgsql
security definer
set search_path = ''
as $$
begin
    analyze public.kb_chunks;
    analyze public.kb_words;
end;
$$;
