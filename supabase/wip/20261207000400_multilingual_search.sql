-- Full text beyond English (issue 27). Both backends call kb_text_search (and
-- kb_hybrid_search through it), so both gain this.
--
-- Beside the English tsvector (stemmed, English stop words) each chunk gets a
-- language-neutral one: the 'simple' configuration (no stemming, no stop words)
-- over the lower-cased, accent-folded text (kb_fold, a plain translate(): no
-- extension needed, so it works the same on every Postgres and on Supabase).
-- A question is looked up in both:
--   * the English ranking (issue 13's, copied as kb_english_search);
--   * kb_simple_search: each folded word of three letters or more, words of six
--     or more letters as a prefix of their first six ("impermanenter" finds
--     "impermanent", "liquidité" "liquidity", "masternod" "masternode"),
--     weighted by inverse document frequency counted in the kb, so words
--     common in the kb or in no way specific ("que", "the", "wie") weigh little.
-- The two lists are fused by reciprocal rank (1 / (60 + rank) each).

create or replace function public.kb_fold(value text)
returns text
language sql immutable parallel safe
as $$
    select translate(replace(lower(coalesce(value, '')), 'ß', 'ss'),
                     'áàâäãåāçćčéèêëēėęíìîïīñńóòôöõøōśšúùûüūýÿžźżœæ',
                     'aaaaaaaccceeeeeeeiiiiinnooooooossuuuuuyyzzzoa')
$$;

alter table public.kb_chunks add column if not exists tsv_simple tsvector generated always as (
    to_tsvector('simple'::regconfig, public.kb_fold(
        coalesce(metadata ->> 'title', '') || ' ' || coalesce(metadata ->> 'section', '') || ' ' || content))
) stored;
create index if not exists kb_chunks_tsv_simple_idx on public.kb_chunks using gin (tsv_simple);

do $$
begin
    -- the English ranking of 20261123000500_ranking.sql, under its new name (its
    -- body names its parameters by the function's name, so it is copied, not renamed)
    if to_regprocedure('public.kb_english_search(text, text, integer)') is null then
        execute replace(pg_get_functiondef('public.kb_text_search(text, text, integer)'::regprocedure),
                        'kb_text_search', 'kb_english_search');
    end if;
end
$$;


-- Language-neutral search: folded words and six-letter prefixes, IDF-weighted.
create or replace function public.kb_simple_search(query text, kb text, k int default 5)
returns table (id bigint, content text, metadata jsonb, score double precision)
language plpgsql stable
as $$
declare
    n double precision;
    terms tsquery[];
    weights double precision[];
    any_term tsquery;
begin
    select count(*) into n from public.kb_chunks c where c.kb = kb_simple_search.kb;
    if n = 0 then
        return;
    end if;
    with words as (
        select distinct case when length(w) >= 6 then left(w, 6) || ':*' else w end as term
        from regexp_split_to_table(public.kb_fold(query), '[^[:alnum:]]+') as w
        where length(w) >= 3
    ),
    counted as (
        select (quote_literal(replace(replace(w.term, ':*', ''), '''', '')) ||
                case when w.term like '%:*' then ':*' else '' end)::tsquery as q
        from words w
    )
    select array_agg(c.q), array_agg(ln((n + 1) / (
               (select count(*) from public.kb_chunks x
                where x.kb = kb_simple_search.kb and x.tsv_simple @@ c.q) + 0.5)))
    into terms, weights
    from counted c;
    if terms is null then
        return;
    end if;
    select string_agg(t::text, ' | ')::tsquery into any_term from unnest(terms) t;
    return query
        select c.id, c.content, c.metadata,
               ((select sum(greatest(t.w, 0)) from unnest(terms, weights) as t(q, w)
                 where c.tsv_simple @@ t.q)
                * (1 + ts_rank(c.tsv_simple, any_term, 1)))::double precision as score
        from public.kb_chunks c
        where c.kb = kb_simple_search.kb and c.tsv_simple @@ any_term
        order by score desc, c.id
        limit k;
end
$$;


-- Full-text search within one knowledge base: the English ranking and the
-- language-neutral one, fused by reciprocal rank.
create or replace function public.kb_text_search(query text, kb text, k int default 5)
returns table (id bigint, content text, metadata jsonb, score double precision)
language sql stable
as $$
    with english as (
        select e.id, e.content, e.metadata, row_number() over (order by e.score desc, e.id) as rank
        from public.kb_english_search(query, kb, k) e
    ),
    neutral as (
        select s.id, s.content, s.metadata, row_number() over (order by s.score desc, s.id) as rank
        from public.kb_simple_search(query, kb, k) s
    ),
    fused as (
        select coalesce(e.id, s.id) as id, coalesce(e.content, s.content) as content,
               coalesce(e.metadata, s.metadata) as metadata,
               coalesce(1.0 / (60 + e.rank), 0) + coalesce(1.0 / (60 + s.rank), 0) as score,
               e.rank as english_rank
        from english e full outer join neutral s on s.id = e.id
    )
    select f.id, f.content, f.metadata, f.score::double precision
    from fused f
    order by f.score desc, f.english_rank nulls last, f.id
    limit k
$$;
